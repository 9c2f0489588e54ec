//! palisade-agent: the per-node agent (see the library for what it does).

use clap::Parser;

// One thread: the agent's work is sequential (one sync at a time), and a single runtime
// thread keeps its memory small.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = palisade_agent::Args::parse();
    palisade_runtime::init_logging(args.log_format);
    palisade_runtime::exit_on_error(palisade_agent::run(args).await);
}
