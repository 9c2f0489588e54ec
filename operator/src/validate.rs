//! Deep validation of one profile generation: what `Accepted` means.

use std::collections::HashMap;
use std::path::PathBuf;

use std::time::Duration;

use palisade_domain::compiled;
use palisade_domain::render::apparmor::RenderedPolicy;
use palisade_domain::render::{apparmor as aa_render, seccomp as sc_render};
use palisade_domain::{AcceptedContent, AppArmorProfile, IgnoredSyscalls, SeccompProfileSpec};
use palisade_runtime::budget::{self, Budget, RunError};
use palisade_runtime::budget::{Parser, ParserError};

/// How the operator runs the parser: compile only, never load.
#[derive(Clone, Debug)]
pub struct ParserConfig {
    pub parser: PathBuf,
    pub include_dir: PathBuf,
    /// What one parser run may use. Over its CPU or memory budget, the profile is Invalid
    /// (the same content would do it again); past the wall-clock time without using up
    /// the CPU budget, the parser is killed and the validation retried later (a hung or
    /// starved parser is not the profile's fault).
    pub budget: Budget,
    /// AppArmor names refused beside the built-in reserved ones (the chart's list).
    pub reserved: Vec<String>,
    /// Directories a SeccompProfile's `listenerPath` may name (the chart's
    /// `seccomp.allowedListenerDirs`); empty: no listener, no `SCMP_ACT_NOTIFY`.
    pub listener_dirs: Vec<String>,
    /// The program that compiles one seccomp profile in a child process within `budget`
    /// (the operator's own binary); `None`: compile on a blocking thread (unit tests).
    pub seccomp_helper: Option<PathBuf>,
}

impl ParserConfig {
    /// `apparmor_parser` as validation runs it: compile only, within the budget.
    pub fn apparmor(&self) -> Parser {
        Parser {
            program: self.parser.clone(),
            include_dir: self.include_dir.clone(),
            // The operator's include directory is its image's: the newest ABI it ships.
            abi_dir: None,
            budget: self.budget.clone(),
            kernel: None,
        }
    }

    /// The default budget with this parser and include directory (tests).
    pub fn with_defaults(parser: impl Into<PathBuf>, include_dir: impl Into<PathBuf>) -> Self {
        Self {
            parser: parser.into(),
            include_dir: include_dir.into(),
            budget: default_budget(),
            reserved: vec![],
            listener_dirs: vec![],
            seccomp_helper: None,
        }
    }
}

/// One parser run's budget unless configured: far above what real profiles take (the
/// heaviest in the corpus compile in under a second and 10 MiB), far below what a policy
/// written to make the parser's automaton explode would take.
pub fn default_budget() -> Budget {
    Budget {
        cpu: Duration::from_secs(10),
        memory: 96 * 1024 * 1024,
        wall: Duration::from_secs(30),
    }
}

/// Why a generation is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Verdict {
    /// The user must change the object. Cached for the content: the same input gives the
    /// same answer.
    #[error("{0}")]
    Invalid(String),
    /// Validation could not run (the parser could not start, was killed or timed out).
    /// Never cached; retried with backoff.
    #[error("validation could not run: {0}")]
    Transient(String),
}

/// What an accepted profile still warns about (seccomp: names the filter leaves out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    pub ignored_syscalls: Vec<IgnoredSyscalls>,
    /// `(reason, message)` for the `SyscallsIgnored` condition; `None` when nothing is ignored.
    pub syscalls: Option<(&'static str, String)>,
    /// The `Weakened` condition's message: what the profile does that weakens more than it
    /// confines (`errnoRet: 0` on a denial, `SECCOMP_FILTER_FLAG_SPEC_ALLOW`).
    pub weakened: Option<String>,
}

/// Validates a SeccompProfile: its `baseProfileName` chain resolves (no missing base, no
/// cycle, not too deep) and the resolved profile compiles with libseccomp for every listed
/// architecture. `all` finds the other SeccompProfiles by name. Returns what was accepted
/// and what it warns about.
pub fn validate_seccomp(
    name: &str,
    spec: &SeccompProfileSpec,
    generation: i64,
    all: &HashMap<String, SeccompProfileSpec>,
    listener_dirs: &[String],
) -> Result<(AcceptedContent, Warnings), Verdict> {
    let rendered = render_seccomp(name, spec, all)?;
    let warnings = compile_seccomp(&rendered, listener_dirs)?;
    Ok((
        AcceptedContent {
            generation,
            digest: rendered.digest,
            bases: rendered.bases,
        },
        warnings,
    ))
}

/// Resolves and renders (the cheap half of validation; its digest keys the cache).
pub fn render_seccomp(
    name: &str,
    spec: &SeccompProfileSpec,
    all: &HashMap<String, SeccompProfileSpec>,
) -> Result<sc_render::RenderedSeccomp, Verdict> {
    sc_render::render(name, spec, |n| all.get(n)).map_err(|e| Verdict::Invalid(e.to_string()))
}

/// Checks what a rendering hands out beyond confinement, then compiles it with libseccomp
/// (the expensive half), here, in this process. Names that no listed architecture has are
/// skipped as the runtimes skip them, and reported as warnings; so is what weakens more
/// than it confines.
pub fn compile_seccomp(rendered: &sc_render::RenderedSeccomp, listener_dirs: &[String]) -> Result<Warnings, Verdict> {
    sc_render::check_listener(rendered, listener_dirs).map_err(Verdict::Invalid)?;
    let compiled = sc_render::compile_rendered(rendered).map_err(|e| Verdict::Invalid(e.to_string()))?;
    Ok(warnings_of(rendered, &compiled.summary))
}

fn warnings_of(rendered: &sc_render::RenderedSeccomp, summary: &sc_render::CompiledSummary) -> Warnings {
    let mut warnings = seccomp_warnings(summary);
    let weakened = sc_render::weakening(rendered);
    if !weakened.is_empty() {
        warnings.weakened = Some(weakened.join("; "));
    }
    warnings
}

/// The argument that makes the operator's binary compile one seccomp profile and exit
/// ([`seccomp_helper_main`]): how the operator runs libseccomp within a budget.
pub const SECCOMP_HELPER_ARG: &str = "compile-seccomp";

/// The helper process: a rendered profile as JSON on stdin, its compile summary (or the
/// error) as JSON on stdout. Returns the exit code.
pub fn seccomp_helper_main() -> i32 {
    let mut input = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::stdin(), &mut input).is_err() {
        return 2;
    }
    let rendered = match serde_json::from_slice::<sc_render::RenderedSeccomp>(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("compile-seccomp: the input is not a rendered profile: {e}");
            return 2;
        }
    };
    let result: Result<sc_render::CompiledSummary, String> = sc_render::compile_rendered(&rendered)
        .map(|c| c.summary)
        .map_err(|e| e.to_string());
    println!("{}", serde_json::to_string(&result).expect("serializes"));
    0
}

/// [`compile_seccomp`] off the async runtime. With a `helper` (the operator's own binary,
/// [`SECCOMP_HELPER_ARG`]) the compile runs in a child process within `budget`, like a
/// parser run: a profile that needs more is Invalid with the numbers. Without one (unit
/// tests), on a blocking thread of this process.
pub async fn compile_seccomp_isolated(
    rendered: std::sync::Arc<sc_render::RenderedSeccomp>,
    cfg: &ParserConfig,
) -> Result<Warnings, Verdict> {
    let Some(helper) = cfg.seccomp_helper.clone() else {
        let listener_dirs = cfg.listener_dirs.clone();
        return tokio::task::spawn_blocking(move || compile_seccomp(&rendered, &listener_dirs))
            .await
            .map_err(|e| Verdict::Transient(format!("the seccomp compile did not finish: {e}")))?;
    };
    sc_render::check_listener(&rendered, &cfg.listener_dirs).map_err(Verdict::Invalid)?;
    let run = budget::Run {
        program: helper,
        args: vec![SECCOMP_HELPER_ARG.into()],
        stdin: Some(serde_json::to_vec(&*rendered).expect("serializes")),
        readable: vec![],
        budget: cfg.budget.clone(),
    };
    let out = match budget::run(&run).await {
        Ok(out) => out,
        Err(e @ RunError::OverBudget { .. }) => {
            return Err(Verdict::Invalid(format!("spec: libseccomp: {e}: simplify the profile")));
        }
        Err(e) => return Err(Verdict::Transient(e.to_string())),
    };
    let result: Result<sc_render::CompiledSummary, String> = serde_json::from_slice(&out.stdout).map_err(|e| {
        Verdict::Transient(format!(
            "the seccomp compile gave no answer ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    let summary = result.map_err(Verdict::Invalid)?;
    Ok(warnings_of(&rendered, &summary))
}

/// At most 20 of `total` names, then how many more (a condition message stays small).
fn few(names: &[String], total: usize) -> String {
    const SHOWN: usize = 20;
    let shown = &names[..names.len().min(SHOWN)];
    if total <= shown.len() {
        shown.join(", ")
    } else {
        format!("{} and {} more", shown.join(", "), total - shown.len())
    }
}

/// The `SyscallsIgnored` condition's reason and message for a compiled profile.
pub fn seccomp_warnings(compiled: &sc_render::CompiledSummary) -> Warnings {
    let Some(first) = compiled.ignored.first() else {
        return Warnings::default();
    };
    let arches: Vec<&str> = compiled.ignored.iter().map(|i| i.architecture.as_str()).collect();
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "?".into());
    let mut message = format!(
        "{} syscall name(s) left out of the filter on {} (runtimes skip them the same way; the file on the node keeps them): {}",
        compiled.ignored_count,
        arches.join(", "),
        few(&first.names, compiled.ignored_count)
    );
    if !compiled.unknown.is_empty() {
        message.push_str(&format!(
            ". Unknown to the operator's libseccomp {version} (a newer syscall or a typo; a node whose runtime knows it enforces the rule): {}",
            few(&compiled.unknown, compiled.unknown.len())
        ));
    }
    let reason = if compiled.fails_open.is_empty() {
        "SyscallsIgnored"
    } else {
        message.push_str(&format!(
            ". A rule denies {} but the default action allows: where the kernel has the syscall and the runtime skips the name, the deny fails open",
            few(&compiled.fails_open, compiled.fails_open.len())
        ));
        "DenyFailsOpen"
    };
    Warnings {
        ignored_syscalls: compiled.ignored.clone(),
        syscalls: Some((reason, message)),
        weakened: None,
    }
}

/// Validates an AppArmorProfile: Palisade's own checks (friendly first errors), then a
/// compile with the real `apparmor_parser` (never loaded), and the judgement of what it
/// compiled ([`compiled::judge`]). Returns what was accepted.
pub async fn validate_apparmor(profile: &AppArmorProfile, parser: &ParserConfig) -> Result<AcceptedContent, Verdict> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    if let Some(reason) = palisade_domain::apparmor::reserved_name(name, &parser.reserved) {
        return Err(Verdict::Invalid(reason));
    }
    let rendered = aa_render::render(name, &profile.spec).map_err(|e| Verdict::Invalid(e.to_string()))?;
    compile_apparmor(name, &rendered, parser).await?;
    Ok(AcceptedContent {
        generation: profile.metadata.generation.unwrap_or_default(),
        digest: rendered.digest,
        bases: vec![],
    })
}

/// The parser half of [`validate_apparmor`]: compiles in the mode the agents load with and
/// judges the binary policy the parser produced, not the text.
pub async fn compile_apparmor(name: &str, rendered: &RenderedPolicy, parser: &ParserConfig) -> Result<(), Verdict> {
    let complain = rendered.mode == palisade_domain::AppArmorMode::Complain;
    let binary = match parser.apparmor().compile(&rendered.text, complain).await {
        Ok(compiled) => compiled.binary,
        Err(ParserError::Refused(message)) => {
            return Err(Verdict::Invalid(format!("spec.policy: apparmor_parser: {message}")));
        }
        Err(ParserError::Run(e @ RunError::OverBudget { .. })) => {
            return Err(Verdict::Invalid(format!("spec.policy: {e}: simplify the policy")));
        }
        Err(ParserError::Run(RunError::Start { reason, .. })) => {
            return Err(Verdict::Transient(format!(
                "cannot run apparmor_parser ({}): {reason}",
                parser.parser.display()
            )));
        }
        Err(ParserError::Run(RunError::TimedOut { secs, .. })) => {
            return Err(Verdict::Transient(format!(
                "apparmor_parser did not finish within {secs}s and was killed"
            )));
        }
        Err(ParserError::Run(RunError::Killed { status, .. })) => {
            return Err(Verdict::Transient(format!("apparmor_parser was killed ({status})")));
        }
    };
    compiled::judge(&binary, name, rendered.mode).map_err(|r| Verdict::Invalid(format!("spec.policy: {r}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use palisade_domain::SeccompProfile;
    use serde_json::json;

    use super::*;

    fn parser() -> ParserConfig {
        ParserConfig::with_defaults("apparmor_parser", "/etc/apparmor.d")
    }

    fn aap(name: &str, spec: serde_json::Value) -> AppArmorProfile {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name, "generation": 4}, "spec": spec}))
        .unwrap()
    }

    fn invalid<T: std::fmt::Debug>(v: Result<T, Verdict>) -> String {
        match v {
            Err(Verdict::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn parser_errors_are_invalid_and_keep_their_line_number() {
        let err = invalid(
            validate_apparmor(
                &aap("p", json!({"policy": "profile p {\n  /tmp/** r,\n  /foo rwx,\n}\n"})),
                &parser(),
            )
            .await,
        );
        assert!(
            err.starts_with("spec.policy: apparmor_parser: line 3: Invalid mode"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn accepts_children_and_hats_and_says_what_it_accepted() {
        let policy = "profile p {\n  profile c {\n  }\n  ^h {\n  }\n}\n";
        let profile = aap("p", json!({"policy": policy}));
        let accepted = validate_apparmor(&profile, &parser()).await.unwrap();
        assert_eq!(accepted.generation, 4);
        assert_eq!(
            accepted.digest,
            aa_render::render("p", &profile.spec).unwrap().digest,
            "the digest agents compare with is the one palisade-domain renders"
        );
        validate_apparmor(
            &aap("p", json!({"abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}})),
            &parser(),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn palisade_checks_run_before_the_parser() {
        let err =
            invalid(validate_apparmor(&aap("p", json!({"policy": "profile p {}\nprofile q {}\n"})), &parser()).await);
        assert!(err.contains("a second top-level profile (\"q\")"), "{err}");
    }

    /// A parser that cannot start, hangs, or dies from a signal is the operator's problem,
    /// not the profile's: Transient, with the reason.
    #[tokio::test]
    async fn a_parser_that_cannot_run_hangs_or_dies_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let profile = aap("p", json!({"policy": "profile p {\n}\n"}));
        let with = |parser: PathBuf, timeout: Duration| ParserConfig {
            budget: Budget {
                wall: timeout,
                ..default_budget()
            },
            ..ParserConfig::with_defaults(parser, "/etc/apparmor.d")
        };

        let hung = with(script("hang", "exec sleep 600"), Duration::from_millis(300));
        let started = std::time::Instant::now();
        match validate_apparmor(&profile, &hung).await {
            Err(Verdict::Transient(m)) => assert!(m.contains("did not finish within"), "{m}"),
            other => panic!("expected Transient, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the timeout ended the run");

        let killed = with(script("killed", "kill -9 $$"), Duration::from_secs(30));
        match validate_apparmor(&profile, &killed).await {
            Err(Verdict::Transient(m)) => assert!(m.contains("was killed"), "{m}"),
            other => panic!("expected Transient, got {other:?}"),
        }

        let missing = with(dir.path().join("no-such-parser"), Duration::from_secs(30));
        match validate_apparmor(&profile, &missing).await {
            Err(Verdict::Transient(m)) => assert!(m.contains("cannot run apparmor_parser"), "{m}"),
            other => panic!("expected Transient, got {other:?}"),
        }
        assert!(
            Verdict::Transient("x".into())
                .to_string()
                .starts_with("validation could not run: "),
            "status says validation could not run, not Invalid"
        );
    }

    /// The compiled judgement, fed policies straight past Palisade's own source checks (as a
    /// policy exploiting a difference between those checks' grammar and the parser's would
    /// get past them): whatever the text looks like, what the parser compiled decides.
    #[tokio::test]
    async fn the_compiled_policy_decides_whatever_the_text_looks_like() {
        use palisade_domain::AppArmorMode::{Complain, Enforce};
        let judge = |text: &str, mode| {
            let rendered = RenderedPolicy {
                text: text.to_string(),
                mode,
                digest: String::new(),
            };
            async move { compile_apparmor("p", &rendered, &parser()).await }
        };
        for (text, mode, want) in [
            // An attachment: the kernel would confine every program the glob matches.
            ("profile p /** {\n}\n", Enforce, "has an attachment"),
            ("profile p /usr/bin/runc {\n}\n", Complain, "has an attachment"),
            // A name the text scanner and the parser read differently.
            ("profile \"p\\\" /**\" {\n}\n", Enforce, "which is not \"p\""),
            // Modes other than spec.mode, at the top or in a child.
            (
                "profile p flags=(complain) {\n}\n",
                Enforce,
                "would load in complain mode, not enforce",
            ),
            (
                "profile p flags=(unconfined) {\n}\n",
                Enforce,
                "would load in unconfined mode",
            ),
            (
                "profile p {\n  profile c flags=(kill) {\n  }\n}\n",
                Enforce,
                "\"p//c\" would load in kill mode",
            ),
            // Another profile beside it, or the profile in another namespace.
            (
                "profile p {\n}\nprofile docker-default {\n}\n",
                Enforce,
                "\"docker-default\", which is not",
            ),
            ("profile :other:p {\n}\n", Enforce, "policy namespace \"other\""),
            // A child whose name forges a line in the kernel's profiles list.
            (
                "profile p {\n  profile \"x (enforce)\\ncri-containerd.apparmor.d\" {\n  }\n}\n",
                Enforce,
                "has a control character",
            ),
        ] {
            let err = invalid(judge(text, mode).await);
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // The same shapes without the trick are accepted: the judgement is not a blanket no.
        judge("profile p {\n  profile c {\n  }\n}\n", Enforce).await.unwrap();
        judge("profile p flags=(complain) {\n}\n", Complain).await.unwrap();
        judge(
            "profile p {\n  /usr/bin/x cx,\n  profile /usr/bin/x {\n  }\n}\n",
            Enforce,
        )
        .await
        .unwrap();
    }

    /// `include` of any file: the parser, in its sandbox, cannot open anything outside the
    /// include directory (Landlock), so no file of the operator's container is read.
    #[tokio::test]
    async fn the_parser_cannot_read_outside_the_include_directory() {
        if !budget::landlock_available() {
            eprintln!("this kernel has no Landlock: the sandbox cannot be tested here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "supersecrettoken\n").unwrap();
        let text = format!("profile p {{\n  include \"{}\"\n}}\n", secret.display());
        let rendered = RenderedPolicy {
            text: text.clone(),
            mode: palisade_domain::AppArmorMode::Enforce,
            digest: String::new(),
        };
        let err = invalid(compile_apparmor("p", &rendered, &parser()).await);
        assert!(err.contains("Could not open"), "{err}");
        assert!(!err.contains("supersecret"), "{err}");
        // Without the sandbox the same parser reads the file (the test can fail).
        let policy = dir.path().join("p");
        std::fs::write(&policy, &text).unwrap();
        let out = std::process::Command::new("apparmor_parser")
            .args(["-Q", "-S", "-I", "/etc/apparmor.d"])
            .arg(&policy)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stderr).contains("Could not open"));
    }

    /// A few hundred bytes that make the parser's automaton explode: over its budget, the
    /// profile is Invalid with the numbers (cached like any verdict on the content, never
    /// retried as "could not run"), within the budget's time, and nothing keeps running.
    #[tokio::test]
    async fn a_policy_that_explodes_the_parser_is_invalid_within_its_budget() {
        let rules: String = (0..4)
            .map(|i| format!("  /**/x{i}*/**/y{i}*/** r,\n  deny /**z{i}*/**[^a]{i}* w,\n"))
            .collect();
        let text = format!("profile p {{\n{rules}}}\n");
        assert!(text.len() < 400, "{} bytes", text.len());
        let started = std::time::Instant::now();
        let err = invalid(validate_apparmor(&aap("p", json!({"policy": text})), &parser()).await);
        assert!(
            err.contains("exceeded its") && err.contains("budget") && err.contains("MiB"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(40), "{:?}", started.elapsed());
    }

    #[test]
    fn reserved_names_are_invalid_and_the_list_extends() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = aap("docker-default", json!({"policy": "profile docker-default {\n}\n"}));
        let err = invalid(rt.block_on(validate_apparmor(&profile, &parser())));
        assert!(err.contains("reserved"), "{err}");
        let mut cfg = parser();
        cfg.reserved = vec!["team-*".into()];
        let err = invalid(rt.block_on(validate_apparmor(
            &aap("team-a", json!({"policy": "profile team-a {\n}\n"})),
            &cfg,
        )));
        assert!(err.contains("the cluster's reserved names list it"), "{err}");
    }

    #[test]
    fn listeners_are_refused_unless_their_directory_is_allowed() {
        let sp = |spec: serde_json::Value| -> SeccompProfileSpec { serde_json::from_value(spec).unwrap() };
        let notify = sp(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent/sock",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let err = invalid(validate_seccomp("n", &notify, 1, &HashMap::new(), &[]));
        assert!(
            err.contains("SCMP_ACT_NOTIFY") && err.contains("none is allowed"),
            "{err}"
        );
        validate_seccomp("n", &notify, 1, &HashMap::new(), &["/run/agent".into()]).unwrap();
        let err = invalid(validate_seccomp(
            "n",
            &notify,
            1,
            &HashMap::new(),
            &["/run/agen".into()],
        ));
        assert!(err.contains("allowed only under /run/agen"), "{err}");
        let sneaky = sp(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent/../../tmp/sock"}));
        invalid(validate_seccomp(
            "s",
            &sneaky,
            1,
            &HashMap::new(),
            &["/run/agent".into()],
        ));
        // A child inherits its base's listener: the child is refused too.
        let all = HashMap::from([("base".to_string(), notify.clone())]);
        let child = sp(json!({"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "base"}));
        let err = invalid(validate_seccomp("child", &child, 1, &all, &[]));
        assert!(err.contains("listenerPath"), "{err}");
    }

    #[test]
    fn errno_zero_and_spec_allow_are_accepted_with_a_warning() {
        let spec: SeccompProfileSpec = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["unlink"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]}))
        .unwrap();
        let (_, warnings) = validate_seccomp("w", &spec, 1, &HashMap::new(), &[]).unwrap();
        let weakened = warnings.weakened.expect("a warning");
        assert!(weakened.contains("unlink are denied but report success"), "{weakened}");
        assert!(weakened.contains("SPEC_ALLOW"), "{weakened}");
        let plain: SeccompProfileSpec = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ERRNO"})).unwrap();
        assert_eq!(
            validate_seccomp("p", &plain, 1, &HashMap::new(), &[])
                .unwrap()
                .1
                .weakened,
            None
        );
    }

    #[test]
    fn seccomp_errors_name_the_problem_and_acceptance_names_the_chain() {
        let sp = |name: &str, spec: serde_json::Value| -> SeccompProfile {
            serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": spec}))
            .unwrap()
        };
        let child = sp(
            "child",
            json!({"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "base"}),
        );
        let err = invalid(validate_seccomp("child", &child.spec, 1, &HashMap::new(), &[]));
        assert!(err.contains("\"base\" (base of \"child\") does not exist"), "{err}");
        let mut all = HashMap::from([(
            "base".to_string(),
            sp(
                "base",
                json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["nosuchcall"], "action": "SCMP_ACT_LOG"}]}),
            )
            .spec,
        )]);
        // An unknown name is accepted as the runtimes accept it, with a warning that names
        // it (here inherited from the base; a deny under an allowing default fails open).
        let (_, warnings) = validate_seccomp("child", &child.spec, 1, &all, &[]).unwrap();
        let (reason, message) = warnings.syscalls.expect("a warning");
        assert_eq!(reason, "SyscallsIgnored");
        assert!(
            message.contains("nosuchcall") && message.contains("Unknown to the operator's libseccomp 2."),
            "{message}"
        );
        assert_eq!(warnings.ignored_syscalls[0].names, ["nosuchcall"]);
        all.get_mut("base").unwrap().syscalls[0].action = palisade_domain::seccomp::SeccompAction::KillProcess;
        let mut logging_child = child.spec.clone();
        logging_child.default_action = palisade_domain::seccomp::SeccompAction::Log;
        let (_, warnings) = validate_seccomp("child", &logging_child, 1, &all, &[]).unwrap();
        let (reason, message) = warnings.syscalls.expect("a warning");
        assert_eq!(reason, "DenyFailsOpen");
        assert!(
            message.contains("A rule denies nosuchcall but the default action allows"),
            "{message}"
        );

        all.get_mut("base").unwrap().syscalls[0].names = vec!["getpid".into()];
        let (accepted, warnings) = validate_seccomp("child", &child.spec, 3, &all, &[]).unwrap();
        assert_eq!(warnings, Warnings::default(), "nothing ignored, nothing said");
        assert_eq!(accepted.generation, 3);
        assert_eq!(accepted.bases, vec!["base".to_string()]);
        assert_eq!(
            accepted.digest,
            sc_render::render("child", &child.spec, |n| all.get(n)).unwrap().digest
        );
    }

    #[test]
    fn a_long_list_of_ignored_names_keeps_the_message_short_and_the_count_right() {
        let names: Vec<String> = (0..300).map(|i| format!("made_up_{i:03}")).collect();
        let spec: SeccompProfileSpec = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}))
        .unwrap();
        let (_, warnings) = validate_seccomp("many", &spec, 1, &HashMap::new(), &[]).unwrap();
        let (_, message) = warnings.syscalls.unwrap();
        assert!(message.starts_with("300 syscall name(s) left out"), "{message}");
        assert!(message.contains("made_up_019 and 280 more"), "{message}");
        assert!(message.len() < 2000, "{} bytes", message.len());
        assert_eq!(
            warnings.ignored_syscalls[0].names.len(),
            256,
            "the list is bounded as the schema says"
        );
    }
}
