fn main() {
    std::process::exit(palisade_cli::main());
}
