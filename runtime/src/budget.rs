//! Running a tool on input that a profile author wrote (`apparmor_parser`, [`Parser`]): within a CPU,
//! memory and wall-clock budget that covers every process it forks, unable to read any
//! file but the ones it is given, and never on the async runtime's threads.
//!
//! - The child starts its own process group; when the run ends (done, timed out or
//!   dropped) the whole group is killed, so a worker the tool forked never outlives it.
//! - `RLIMIT_CPU` and `RLIMIT_AS` are set in the child and inherited by what it forks.
//! - Landlock (where the kernel has it) lets the child read only the paths it is given:
//!   whatever the input says (an `include` of any file), nothing else can be opened.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use std::os::unix::process::CommandExt;

/// The flags of the parser's budget and of reserved names, the same in the operator and the
/// agents (`#[command(flatten)]`): both must judge a profile by the same limits.
#[derive(clap::Args, Clone, Debug)]
pub struct ParserArgs {
    /// Longest one apparmor_parser run may take, in seconds; a parser that has not used up
    /// its CPU budget by then (hung, starved) is killed, with every process it forked, and
    /// the run retried later.
    #[arg(long, env = "PALISADE_PARSER_TIMEOUT", default_value_t = 60)]
    pub parser_timeout: u64,
    /// CPU seconds one apparmor_parser run may use (every process it forks); a profile that
    /// needs more is refused ("exceeded its CPU budget") and not compiled again until it
    /// changes.
    #[arg(long, env = "PALISADE_PARSER_CPU_SECONDS", default_value_t = 10)]
    pub parser_cpu_seconds: u64,
    /// Address space one apparmor_parser process may use, in MiB; a profile that needs more
    /// is refused ("exceeded its memory budget").
    #[arg(long, env = "PALISADE_PARSER_MEMORY_MIB", default_value_t = 96)]
    pub parser_memory_mib: u64,
    /// AppArmor profile names (or `prefix*`) refused beside the built-in reserved list;
    /// comma-separated.
    #[arg(long, env = "PALISADE_RESERVED_PROFILE_NAMES", value_delimiter = ',')]
    pub reserved_profile_names: Vec<String>,
}

impl ParserArgs {
    /// One parser run's budget.
    pub fn budget(&self) -> Budget {
        Budget {
            cpu: Duration::from_secs(self.parser_cpu_seconds.max(1)),
            memory: self.parser_memory_mib.max(16) * 1024 * 1024,
            wall: Duration::from_secs(self.parser_timeout.max(1)),
        }
    }
}

/// What one run may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// CPU time of each process (RLIMIT_CPU).
    pub cpu: Duration,
    /// Address space of each process, bytes (RLIMIT_AS).
    pub memory: u64,
    /// Wall-clock time of the whole run.
    pub wall: Duration,
}

impl Budget {
    /// The budget in words, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} s of CPU, {} MiB of memory, {} s in all",
            self.cpu.as_secs(),
            self.memory / (1024 * 1024),
            self.wall.as_secs()
        )
    }
}

/// Why a run gave no output to judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The tool could not be started (missing, not executable, sandbox refused).
    #[error("cannot run {tool}: {reason}")]
    Start { tool: String, reason: String },
    /// The input made the tool use more than its CPU or memory budget: the input's fault,
    /// the same input will do it again.
    #[error("{tool} exceeded its {what} budget ({budget}) and was stopped")]
    OverBudget {
        tool: String,
        what: &'static str,
        budget: String,
    },
    /// The run took longer than its wall-clock budget without using up its CPU budget (a
    /// hung tool or a starved machine): not known to be the input's fault.
    #[error("{tool} did not finish within {secs} s and was killed")]
    TimedOut { tool: String, secs: u64 },
    /// The tool died from a signal nobody here sent.
    #[error("{tool} was killed ({status})")]
    Killed { tool: String, status: String },
}

/// One run: the program, its arguments, its input, the files it may read, its budget.
#[derive(Clone, Debug)]
pub struct Run {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub stdin: Option<Vec<u8>>,
    /// Paths (files or directories, read recursively) the tool may read. Empty: no
    /// restriction (used only where the caller reads nothing a profile author wrote).
    pub readable: Vec<PathBuf>,
    pub budget: Budget,
}

/// Paths every tool needs to start (programs, libraries, the loader cache, locale data, the
/// CPU list glibc reads) and the parser's own configuration and feature files: none is a
/// secret.
pub const SYSTEM_READABLE: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/locale",
    "/usr/share/apparmor-features",
    "/etc/ld.so.cache",
    "/etc/apparmor",
    "/sys/devices/system/cpu",
];

/// Runs at once per process: each may use its whole memory budget, so the process's memory
/// limit must hold this many budgets (the chart's limits do: 2 × 96 MiB beside the binary).
pub const RUNS_AT_ONCE: usize = 2;

static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RUNS_AT_ONCE);

/// Whether Landlock restricts file access on this kernel (checked once).
pub fn landlock_available() -> bool {
    use landlock::{ABI, AccessFs, Compatible, Ruleset, RulesetAttr};
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Ruleset::default()
            .set_compatibility(landlock::CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_read(ABI::V1))
            .and_then(|r| r.create())
            .is_ok()
    })
}

fn sandbox(readable: &[PathBuf]) -> Result<Option<landlock::RulesetCreated>, String> {
    use landlock::{ABI, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr};
    if readable.is_empty() || !landlock_available() {
        return Ok(None);
    }
    let read = AccessFs::from_read(ABI::V1);
    let mut ruleset = Ruleset::default()
        .handle_access(read)
        .and_then(|r| r.create())
        .map_err(|e| format!("landlock: {e}"))?;
    for path in readable {
        // A path that does not exist on this host needs no rule.
        let Ok(fd) = PathFd::new(path) else { continue };
        let access = if path.is_dir() {
            read
        } else {
            AccessFs::from_file(ABI::V1) & read
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
    }
    Ok(Some(ruleset))
}

/// The program's path: as given, or found on `PATH` for a bare name.
fn resolve(program: &std::path::Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit with a valid pointer; async-signal-safe (called between fork and exec).
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Kills the whole process group of `pgid` (ignoring one that is already gone).
fn kill_group(pgid: u32) {
    // SAFETY: kill(2) on a process group id this module created.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
}

/// Kills a process group when dropped (the run timed out or was cancelled), unless the
/// waiting thread already did and is about to reap the leader (`done`): a group id is
/// killed only while its leader is not reaped, so it can never be another group's.
struct GroupGuard {
    pgid: u32,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.done.load(std::sync::atomic::Ordering::SeqCst) {
            kill_group(self.pgid);
        }
    }
}

/// Waits until `pid` has exited, without reaping it: while it is a zombie its pid (the
/// group's id) cannot be reused.
fn wait_exited(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid pointer.
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What the kernel says one finished process used.
#[derive(Clone, Copy, Debug)]
struct Usage {
    cpu: Duration,
    peak_rss_kib: u64,
}

/// Runs the tool within its budget and sandbox; returns its output whatever its exit code
/// (the caller reads the tool's own verdict), or why there is none. The tool runs on a
/// blocking thread, never on the async runtime's.
pub async fn run(run: &Run) -> Result<std::process::Output, RunError> {
    let _slot = SLOTS.acquire().await.expect("the semaphore is never closed");
    let tool = run
        .program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.program.display().to_string());
    let start_err = |reason: String| RunError::Start {
        tool: tool.clone(),
        reason,
    };
    let mut readable = run.readable.clone();
    if !readable.is_empty() {
        // The program itself: exec opens it for reading.
        readable.push(resolve(&run.program));
    }
    let mut ruleset = sandbox(&readable).map_err(start_err)?;
    let mut cmd = std::process::Command::new(&run.program);
    cmd.args(&run.args)
        .stdin(if run.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let cpu = run.budget.cpu.as_secs().max(1);
    let memory = run.budget.memory;
    // SAFETY: the closure runs in the child between fork and exec; it only makes system
    // calls (setrlimit, prctl and landlock_restrict_self through the crate).
    unsafe {
        cmd.pre_exec(move || {
            // Soft limit: SIGXCPU; one second later the kernel sends SIGKILL.
            set_limit(libc::RLIMIT_CPU, cpu, cpu + 1)?;
            set_limit(libc::RLIMIT_AS, memory, memory)?;
            set_limit(libc::RLIMIT_CORE, 0, 0)?;
            // Dies with the process that started it (a crashed agent leaves no parser).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(rs) = ruleset.take() {
                rs.restrict_self().map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| start_err(e.to_string()))?;
    let pid = child.id();
    // From here on, however this function ends (done, timeout, cancelled), the whole group
    // is killed: no worker the tool forked outlives the run.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _group = GroupGuard {
        pgid: pid,
        done: done.clone(),
    };
    let stdin = run.stdin.clone();
    let waiter = tokio::task::spawn_blocking(move || {
        let writer = child.stdin.take().zip(stdin).map(|(mut pipe, input)| {
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&input);
            })
        });
        let err_reader = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut pipe, &mut buf);
                buf
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            let _ = std::io::Read::read_to_end(&mut pipe, &mut stdout);
        }
        let stderr = err_reader.and_then(|t| t.join().ok()).unwrap_or_default();
        if let Some(w) = writer {
            let _ = w.join();
        }
        // The leader has exited: end what it forked, then reap it.
        wait_exited(pid)?;
        kill_group(pid);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (status, usage) = wait_with_usage(pid)?;
        Ok::<_, std::io::Error>((std::process::Output { status, stdout, stderr }, usage))
    });
    let (out, usage) = match tokio::time::timeout(run.budget.wall, waiter).await {
        Ok(Ok(Ok(done))) => done,
        Ok(Ok(Err(e))) => return Err(start_err(e.to_string())),
        Ok(Err(e)) => return Err(start_err(e.to_string())),
        Err(_) => {
            return Err(RunError::TimedOut {
                tool,
                secs: run.budget.wall.as_secs(),
            });
        }
    };
    classify(&tool, out, usage, &run.budget)
}

/// Reaps `pid` and returns what it used (wait4: the kernel's own accounting).
fn wait_with_usage(pid: u32) -> std::io::Result<(ExitStatus, Usage)> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid pointers.
        let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
        if r == pid as i32 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok((
        ExitStatus::from_raw(status),
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            peak_rss_kib: usage.ru_maxrss as u64,
        },
    ))
}

fn classify(
    tool: &str,
    out: std::process::Output,
    usage: Usage,
    budget: &Budget,
) -> Result<std::process::Output, RunError> {
    let over = |what| RunError::OverBudget {
        tool: tool.to_string(),
        what,
        budget: format!(
            "{}; it used {:.1} s of CPU and {} MiB resident",
            budget.describe(),
            usage.cpu.as_secs_f64(),
            usage.peak_rss_kib / 1024
        ),
    };
    // A tool may do its work in a child it forks and waits for (apparmor_parser does), and
    // exit with an error when that child dies: what the child used counts (wait4 adds the
    // usage of the children it waited for).
    // The kernel's accounting of a child killed at its limit can lag the limit itself (seen:
    // 1.8 s reported for a 2 s limit): four fifths of the budget count as all of it.
    let cpu_spent = usage.cpu * 5 >= budget.cpu * 4;
    match out.status.signal() {
        None => {
            let stderr = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
            if !out.status.success() && cpu_spent {
                return Err(over("CPU"));
            }
            if !out.status.success() && (stderr.contains("memory") || stderr.contains("bad_alloc")) {
                return Err(over("memory"));
            }
            Ok(out)
        }
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        Some(libc::SIGXCPU) => Err(over("CPU")),
        Some(libc::SIGKILL) if cpu_spent => Err(over("CPU")),
        // An allocation the address-space limit refused: C++ aborts, C may crash.
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => Err(over("memory")),
        Some(_) => Err(RunError::Killed {
            tool: tool.to_string(),
            status: out.status.to_string(),
        }),
    }
}

// `apparmor_parser`, run the one way Palisade runs it: by the operator to validate a profile
// (compile only) and by the agents to compile and then load it into their node's kernel.
// The source always comes on stdin, so the operator and the agents compile exactly the same
// way, and the parser's own words come back trimmed by [`parser_message`].

/// How one program is run as `apparmor_parser`.
#[derive(Clone, Debug)]
pub struct Parser {
    pub program: PathBuf,
    /// The directory includes resolve against (`-I`): the host's `/etc/apparmor.d`.
    pub include_dir: PathBuf,
    /// A directory searched after `include_dir` that holds only the parser's own policy ABI
    /// files (`abi/4.0`, ...): a policy written for a newer ABI than the host's userspace
    /// ships still compiles with this parser. `None`: only `include_dir`.
    pub abi_dir: Option<PathBuf>,
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

    /// Compiles `source` to a binary policy (never loaded), in complain mode if asked, with
    /// the rule classes the parser says the kernel will not enforce.
    pub async fn compile(&self, source: &str, complain: bool) -> Result<Compiled, ParserError> {
        let out = self
            .run(
                compile_args(&self.include_dir, self.abi_dir.as_deref(), complain),
                Some(source.as_bytes().to_vec()),
                vec![],
            )
            .await?;
        if !out.status.success() {
            return Err(ParserError::Refused(parser_message(&out.stderr, out.status.code())));
        }
        Ok(Compiled {
            binary: out.stdout,
            not_enforced: not_enforced(&out.stderr),
        })
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
        let mut readable: Vec<PathBuf> = SYSTEM_READABLE.iter().map(PathBuf::from).collect();
        readable.push(self.include_dir.clone());
        // Of the ABI directory, only its `abi/` files.
        readable.extend(self.abi_dir.as_ref().map(|d| d.join("abi")));
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
        run(&Run {
            program: self.program.clone(),
            args: all,
            stdin,
            readable,
            budget: self.budget.clone(),
        })
        .await
    }
}

/// A policy compiled by the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The binary policy.
    pub binary: Vec<u8>,
    /// The rule classes (`userns`, `io_uring`, `mqueue`, ...) the policy has rules for and
    /// the kernel it was compiled for does not mediate, in the parser's own words (its
    /// `rule-not-enforced` warnings): the parser leaves them out, the rest is enforced.
    pub not_enforced: Vec<String>,
}

/// At most this many rule classes are kept from the parser's warnings.
pub const MAX_NOT_ENFORCED: usize = 16;

/// The rule class one line of the parser's stderr says is not enforced, if the line is such
/// a warning (`Warning from profile NAME (stdin): userns rules not enforced`; parser 4.1
/// also says `mqueue type=posix rules not enforced`, `mount rules not enforce`, `deny unix
/// socket rule not enforced, can't be downgraded to generic network rule` and `extended
/// network unix socket rules not enforced`). The class is the message's first word (after
/// `deny`), or `unix` for the unix socket messages; a message of another shape gives
/// `other`, so no such warning is ever dropped. Only the text after the last `: ` is read,
/// so a profile's name cannot add anything.
pub fn not_enforced_class(line: &str) -> Option<String> {
    let line = line.trim_end();
    if !line.starts_with("Warning") || !line.contains("not enforce") {
        return None;
    }
    let message = line.rsplit_once(": ").map_or(line, |(_, m)| m);
    if !message.contains("not enforce") {
        return Some("other".into());
    }
    let words: Vec<&str> = message.split_whitespace().collect();
    if words.contains(&"unix") {
        return Some("unix".into());
    }
    let first = words.iter().copied().find(|w| *w != "deny").unwrap_or_default();
    Some(if palisade_domain::nodestatus::is_rule_class(first) {
        first.to_string()
    } else {
        "other".to_string()
    })
}

/// The rule classes named by the parser's `rule-not-enforced` warnings
/// ([`not_enforced_class`]), sorted, each once, at most [`MAX_NOT_ENFORCED`].
pub fn not_enforced(stderr: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stderr);
    let mut classes: Vec<String> = text.lines().filter_map(not_enforced_class).collect();
    classes.sort();
    classes.dedup();
    classes.truncate(MAX_NOT_ENFORCED);
    classes
}

/// The parser's arguments to compile from stdin to a binary policy on stdout.
pub fn compile_args(include_dir: &Path, abi_dir: Option<&Path>, complain: bool) -> Vec<OsString> {
    // One compile worker at a time: each process the parser forks has the whole budget.
    // Quiet, but for the warning that a rule class is not enforced by the kernel.
    let mut args: Vec<OsString> = [
        "--skip-kernel-load",
        "--skip-cache",
        "--quiet",
        "--warn=rule-not-enforced",
        "--stdout",
        "--jobs=1",
        "--max-jobs=1",
        "-I",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(include_dir.into());
    if let Some(abi_dir) = abi_dir {
        args.push("-I".into());
        args.push(abi_dir.into());
    }
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
        // Rules not enforced are a warning of a compile that worked, never the error.
        .filter(|l| not_enforced_class(l).is_none())
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
    fn rule_classes_not_enforced_are_read_from_the_parsers_warnings_only() {
        // apparmor_parser 4.1's words, a profile's name chosen to look like a warning, and
        // other warnings.
        let stderr = b"Warning from profile t1 (stdin): userns rules not enforced\n\
Warning from profile t1 (stdin): io_uring rules not enforced\n\
Warning from profile y (stdin): userns rules not enforced\n\
Warning from profile z (stdin): network rules downgraded\n\
Cache read/write disabled: interface file missing.\n\
mqueue rules not enforced\n";
        assert_eq!(not_enforced(stderr), ["io_uring", "userns"]);
        // Parser 4.1's other shapes of the warning: none is dropped.
        for (line, class) in [
            (
                "Warning from profile p (stdin): mqueue type=posix rules not enforced",
                "mqueue",
            ),
            (
                "Warning from profile p (stdin): mqueue type=sysv rules not enforced",
                "mqueue",
            ),
            ("Warning from profile p (stdin): mount rules not enforce", "mount"),
            (
                "Warning from profile p (stdin): deny unix socket rule not enforced, can't be downgraded to generic network rule",
                "unix",
            ),
            (
                "Warning from profile p (stdin): extended network unix socket rules not enforced",
                "unix",
            ),
            ("Warning from profile p (stdin): Something new not enforced", "other"),
            // A name shaped like a class: only the text after the last `: ` counts.
            (
                "Warning from profile x): userns rules not enforced (stdin): dbus rules not enforced",
                "dbus",
            ),
            (
                "Warning from profile x): mqueue (stdin): Mqueue; rm -rf rules not enforced",
                "other",
            ),
        ] {
            assert_eq!(not_enforced_class(line).as_deref(), Some(class), "{line}");
        }
        assert_eq!(
            not_enforced_class("Warning from profile p (stdin): network rules downgraded"),
            None
        );
        assert!(not_enforced(b"").is_empty());
        let many: String = (0..100)
            .map(|i| format!("Warning from profile p (stdin): c{i:03} rules not enforced\n"))
            .collect();
        assert_eq!(not_enforced(many.as_bytes()).len(), MAX_NOT_ENFORCED);
        // A failed compile's message is the error, not these warnings.
        let failed = b"Warning from profile p (stdin): userns rules not enforced\nAppArmor parser error at line 3: syntax error\n";
        assert_eq!(parser_message(failed, Some(1)), "line 3: syntax error");
    }

    fn budget(cpu: u64, wall: u64) -> Budget {
        Budget {
            cpu: Duration::from_secs(cpu),
            memory: 512 * 1024 * 1024,
            wall: Duration::from_secs(wall),
        }
    }

    fn sh(script: &str, readable: Vec<PathBuf>, budget: Budget) -> Run {
        Run {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            stdin: None,
            readable,
            budget,
        }
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// A tool that forks a worker and then hangs: the timeout kills both, nothing is left.
    #[tokio::test]
    async fn a_timeout_kills_every_process_the_tool_forked() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("worker");
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let err = run(&sh(&script, vec![], budget(30, 1))).await.unwrap_err();
        assert!(matches!(err, RunError::TimedOut { secs: 1, .. }), "{err:?}");
        let worker: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The group was killed when the run ended; reap-free check: the pid is gone or a zombie
        // of init's. Poll briefly for the kernel to deliver the signal.
        let mut gone = false;
        for _ in 0..100 {
            let state = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
            if !alive(worker) || state.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the forked worker {worker} outlived the run");
    }

    #[tokio::test]
    async fn a_cpu_hog_is_over_budget_not_timed_out() {
        let err = run(&sh("while :; do :; done", vec![], budget(1, 30)))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::OverBudget { what: "CPU", .. }), "{err:?}");
        assert!(err.to_string().contains("1 s of CPU"), "{err}");
    }

    #[tokio::test]
    async fn a_memory_hog_is_over_budget() {
        // Python is not needed: awk grows a string until the address-space limit stops it.
        let mut b = budget(30, 30);
        b.memory = 64 * 1024 * 1024;
        let err = run(&sh("awk 'BEGIN { s = \"x\"; while (1) s = s s }'", vec![], b))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::OverBudget { what: "memory", .. }), "{err:?}");
    }

    /// With Landlock, the tool reads what it is given and nothing else, whatever it asks.
    #[tokio::test]
    async fn the_sandbox_reads_only_what_it_is_given() {
        if !landlock_available() {
            eprintln!("this kernel has no Landlock: the sandbox cannot be tested here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let secret = dir.path().join("secret");
        std::fs::write(&allowed, "ok\n").unwrap();
        std::fs::write(&secret, "token\n").unwrap();
        let mut readable: Vec<PathBuf> = SYSTEM_READABLE.iter().map(PathBuf::from).collect();
        readable.push("/bin".into());
        readable.push("/usr/bin".into());
        readable.push(allowed.clone());
        let script = format!("cat {}; cat {}", allowed.display(), secret.display());
        let out = run(&sh(&script, readable.clone(), budget(30, 30))).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Without the rule, the same read succeeds: the test can fail.
        let out = run(&sh(&format!("cat {}", secret.display()), vec![], budget(30, 30)))
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "token\n");
    }

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
