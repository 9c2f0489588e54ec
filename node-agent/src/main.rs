//! palisade-agent: the per-node agent (see the library for what it does).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = palisade_agent::Args::parse();
    palisade_runtime::init_logging(args.log_format);
    palisade_agent::run(args).await
}
