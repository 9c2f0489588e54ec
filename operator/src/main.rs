//! palisade-operator: the cluster controller (see the library for what it does).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = palisade_operator::Args::parse();
    palisade_runtime::init_logging(args.log_format);
    palisade_operator::run(args).await
}
