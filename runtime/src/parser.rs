//! `apparmor_parser`, run the one way Palisade runs it: by the operator to validate a profile
//! (compile only) and by the agents to compile and then load it into their node's kernel.
//!
//! Every run is a [`budget::run`]: within the CPU, memory and time budget, able to read only
//! the include directory, the kernel's interface (the agents) and what the parser itself
//! needs. The source always comes on stdin, so the operator and the agents compile exactly
//! the same way, and the parser's own words come back trimmed by [`parser_message`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::budget::{self, Budget, RunError};

/// How one program is run as `apparmor_parser`.
#[derive(Clone, Debug)]
pub struct Parser {
    pub program: PathBuf,
    /// The directory includes resolve against (`-I`): the host's `/etc/apparmor.d`.
    pub include_dir: PathBuf,
    pub budget: Budget,
    /// The kernel to compile for and load into (an agent); `None`: compile only, for the
    /// features the parser finds itself (the operator).
    pub kernel: Option<Kernel>,
}

/// The kernel's AppArmor interface an agent compiles for and loads into.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Where apparmorfs is mounted (`--subdomainfs`).
    pub apparmorfs: PathBuf,
    /// A features file the parser is told the kernel has (a simulated kernel in tests).
    pub features: Option<PathBuf>,
}

/// Why the parser gave nothing to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParserError {
    /// It did not run to the end: could not start, over its budget, hung, killed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// It ran and refused the input: its own words, trimmed.
    #[error("{0}")]
    Refused(String),
}

impl Parser {
    /// The parser's version (the last word of its first line).
    pub async fn version(&self) -> Result<String, RunError> {
        let out = self.run(vec!["--version".into()], None, vec![]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        Ok(first.rsplit(' ').next().unwrap_or(first).to_string())
    }

    /// Compiles `source` to a binary policy (never loaded), in complain mode if asked.
    pub async fn compile(&self, source: &str, complain: bool) -> Result<Vec<u8>, ParserError> {
        let out = self
            .run(
                compile_args(&self.include_dir, complain),
                Some(source.as_bytes().to_vec()),
                vec![],
            )
            .await?;
        if !out.status.success() {
            return Err(ParserError::Refused(parser_message(&out.stderr, out.status.code())));
        }
        Ok(out.stdout)
    }

    /// Loads (or replaces) exactly the binary policy in `compiled` into the kernel.
    pub async fn load_binary(&self, compiled: &Path) -> Result<(), ParserError> {
        let args = vec!["--replace".into(), "--binary".into(), "--quiet".into(), compiled.into()];
        let out = self.run(args, None, vec![compiled.to_path_buf()]).await?;
        if !out.status.success() {
            return Err(ParserError::Refused(parser_message(&out.stderr, out.status.code())));
        }
        Ok(())
    }

    async fn run(
        &self,
        args: Vec<OsString>,
        stdin: Option<Vec<u8>>,
        inputs: Vec<PathBuf>,
    ) -> Result<std::process::Output, RunError> {
        let mut readable: Vec<PathBuf> = budget::SYSTEM_READABLE.iter().map(PathBuf::from).collect();
        readable.push(self.include_dir.clone());
        readable.extend(inputs);
        let mut all: Vec<OsString> = Vec::new();
        if let Some(kernel) = &self.kernel {
            // The kernel's features, and `.replace` is found through it.
            readable.push(kernel.apparmorfs.clone());
            all.push("--subdomainfs".into());
            all.push(kernel.apparmorfs.clone().into());
            if let Some(features) = &kernel.features {
                readable.push(features.clone());
                all.push("--kernel-features".into());
                all.push(features.into());
            }
        }
        all.extend(args);
        budget::run(&budget::Run {
            program: self.program.clone(),
            args: all,
            stdin,
            readable,
            budget: self.budget.clone(),
        })
        .await
    }
}

/// The parser's arguments to compile from stdin to a binary policy on stdout.
pub fn compile_args(include_dir: &Path, complain: bool) -> Vec<OsString> {
    // One compile worker at a time: each process the parser forks has the whole budget.
    let mut args: Vec<OsString> = [
        "--skip-kernel-load",
        "--skip-cache",
        "--quiet",
        "--stdout",
        "--jobs=1",
        "--max-jobs=1",
        "-I",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(include_dir.into());
    if complain {
        args.push("--Complain".into());
    }
    args
}

/// The parser's error in one line: its own lines joined, chatter and control characters
/// dropped, at most about 900 bytes.
pub fn parser_message(stderr: &[u8], code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Cache read/write disabled"))
        .map(|l| l.chars().map(|c| if c.is_control() { '?' } else { c }).collect())
        .collect();
    if lines.is_empty() {
        return match code {
            Some(code) => format!("apparmor_parser failed (exit status {code})"),
            None => "apparmor_parser failed (killed)".to_string(),
        };
    }
    let message = lines.join("; ").replace("AppArmor parser error at line", "line");
    if message.len() > 900 {
        format!("{}…", &message[..message.floor_char_boundary(900)])
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_keep_the_line_and_drop_chatter() {
        let stderr = b"Cache read/write disabled: interface file missing.\nAppArmor parser error for /s/p in profile /s/p at line 2: Invalid mode\n";
        assert_eq!(
            parser_message(stderr, Some(1)),
            "AppArmor parser error for /s/p in profile /s/p at line 2: Invalid mode"
        );
        assert_eq!(
            parser_message(b"AppArmor parser error at line 3: Invalid mode\n", Some(1)),
            "line 3: Invalid mode"
        );
        assert_eq!(parser_message(b"", Some(1)), "apparmor_parser failed (exit status 1)");
        assert_eq!(parser_message(b"", None), "apparmor_parser failed (killed)");
        let long = "x".repeat(2000);
        assert!(parser_message(long.as_bytes(), Some(1)).len() < 910);
        assert_eq!(parser_message(b"a\x1b[31mb\n", Some(1)), "a?[31mb");
    }
}
