//! palisade-operator: the cluster controller (see the library for what it does).

use clap::Parser;

fn main() {
    // The operator runs itself to compile one seccomp profile within a budget.
    if std::env::args().nth(1).as_deref() == Some(palisade_operator::validate::SECCOMP_HELPER_ARG) {
        std::process::exit(palisade_operator::validate::seccomp_helper_main());
    }
    let args = palisade_operator::Args::parse();
    palisade_runtime::init_logging(args.log_format);
    // Two arenas for a handful of mostly idle threads: each arena keeps its own free memory.
    palisade_runtime::limit_malloc_arenas(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    palisade_runtime::exit_on_error(runtime.block_on(palisade_operator::run(args)));
}
