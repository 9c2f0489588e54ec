//! palisade-agent: the per-node agent that installs and reports AppArmor and seccomp profiles.

use clap::Parser;

/// Command-line flags; each is also an environment variable.
#[derive(Parser, Debug)]
#[command(name = "palisade-agent", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("palisade-agent is not implemented yet (see the node-agent issue)")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
