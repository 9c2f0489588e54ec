//! `kubectl palisade ...`: kubectl runs this for the `palisade` plugin.
fn main() {
    std::process::exit(palisade_cli::main());
}
