//! palisade-operator: the cluster controller (validation, status aggregation, in-use protection).

use clap::Parser;

/// Command-line flags; each is also an environment variable.
#[derive(Parser, Debug)]
#[command(name = "palisade-operator", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("palisade-operator is not implemented yet (see the operator issue)")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
