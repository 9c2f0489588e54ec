//! The `palisade` command (also `kubectl palisade` when installed as `kubectl-palisade`).
//!
//! `palisade convert` turns profiles people already have into Palisade objects: Docker's
//! and Podman's seccomp JSON, the Security Profiles Operator's manifests, and raw AppArmor
//! profile files. It prints what it evaluated and what it left out on stderr, the objects
//! on stdout.

pub mod audit;
pub mod cluster;
pub mod denials;
pub mod docker;
pub mod errno;
pub mod learn;
pub mod spo;
mod table;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Why an input could not be converted: the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("{context}: {inner}")]
    Within { context: String, inner: Box<ConvertError> },
}

impl ConvertError {
    pub fn within(self, context: &str) -> Self {
        Self::Within {
            context: context.to_string(),
            inner: Box::new(self),
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "palisade",
    version,
    about = "Palisade's command-line tool (also `kubectl palisade`)"
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: cluster::Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert Docker/Podman seccomp JSON, SPO manifests or raw AppArmor profiles into
    /// Palisade objects (printed as YAML on stdout; what was evaluated goes to stderr).
    Convert(ConvertArgs),
    /// Profiles × nodes at a glance: Ready, counts, and each node that has not installed
    /// the accepted content, with its message and its kernel and runtime (one profile:
    /// every node).
    Status {
        /// One profile (default: all).
        profile: Option<String>,
        #[arg(long, value_enum)]
        kind: Option<cluster::Kind>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The effective rules of a SeccompProfile after inheritance, each with where it came
    /// from; for an AppArmorProfile, the policy text the nodes load.
    Explain {
        profile: String,
        #[arg(long, value_enum)]
        kind: Option<cluster::Kind>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The cluster's confinement posture: containers without seccomp or AppArmor (or
    /// Unconfined, or privileged), pods naming profiles that do not exist or are not
    /// installed on their node, profiles no pod uses, nodes without AppArmor. Exits 1 when a
    /// finding reaches `--fail-on`, so it can gate a pipeline.
    Audit {
        /// Only pods in this namespace (default: all namespaces).
        #[arg(short, long)]
        namespace: Option<String>,
        /// The lowest severity that makes the exit code 1.
        #[arg(long, value_enum, default_value_t = audit::Severity::Low)]
        fail_on: audit::Severity,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// What the nodes learned for a profile in Complain mode (AppArmor) or whose filter
    /// logs (seccomp, SCMP_ACT_LOG): the suggested rules with counts, when and where they
    /// were seen, and the change to the profile as a diff. `--apply` writes the rules into
    /// the profile (applying twice adds nothing); `--enforce` also switches it to Enforce
    /// (AppArmor) or from SCMP_ACT_LOG to SCMP_ACT_ERRNO (seccomp). `-o manifest` prints,
    /// and `--output-dir` writes, the profile as `--apply` would leave it (for a GitOps
    /// repository) without changing the cluster.
    ///
    /// `--workload KIND/NAME` takes a Deployment, StatefulSet, DaemonSet or Pod from no
    /// profile to enforced: it creates learning profiles `<namespace>-<name>` (AppArmor in
    /// Complain, seccomp logging), binds them to the workload's pods with ProfileBindings,
    /// restarts the workload, waits until nothing new was learned for --quiet-for, then
    /// shows the diff (and with --apply --enforce enforces and restarts it once more).
    /// Interrupted, it can be run again to continue.
    Learn {
        /// The profile (without --workload).
        #[arg(required_unless_present = "workload", conflicts_with = "workload")]
        profile: Option<String>,
        /// Learn for a workload: deployment/NAME, statefulset/NAME, daemonset/NAME or pod/NAME.
        #[arg(long, value_name = "KIND/NAME", value_parser = workload::parse_workload)]
        workload: Option<workload::Workload>,
        /// The workload's namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long, requires = "workload")]
        namespace: Option<String>,
        /// With --workload: done once nothing new was learned for this long.
        #[arg(long, default_value = "60s", value_parser = workload::parse_duration, requires = "workload")]
        quiet_for: std::time::Duration,
        /// With --workload: done after this long in any case.
        #[arg(long, default_value = "15m", value_parser = workload::parse_duration, requires = "workload")]
        duration: std::time::Duration,
        /// One kind only (both when unset).
        #[arg(long, value_enum)]
        kind: Option<cluster::Kind>,
        /// Write the learned rules into the profile.
        #[arg(long)]
        apply: bool,
        /// Also leave learning mode: with --apply in the cluster, with -o manifest or
        /// --output-dir in the manifest.
        #[arg(long)]
        enforce: bool,
        /// `manifest`: the whole profile as --apply would leave it, as YAML for `kubectl
        /// apply -f` (the cluster is not changed).
        #[arg(short, long, value_enum, default_value_t = LearnFormat::Table)]
        output: LearnFormat,
        /// Write the profile as --apply would leave it to DIR/<kind>-<name>.yaml
        /// (`seccomp-web.yaml`), creating DIR, and print the paths written, instead of
        /// applying it (with --workload, also its bindings; learning itself still creates
        /// the learning profiles and bindings in the cluster).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["apply", "output"])]
        output_dir: Option<PathBuf>,
    },
    /// What the kernel refused containers under Palisade profiles, newest first, with the
    /// node: from the Events the agents write (chart value denials.enabled), so no shell on
    /// the node is needed. Hints name the nodes that cannot report.
    Denials {
        /// One pod (default: all).
        pod: Option<String>,
        /// Only pods in this namespace (default: all namespaces, and the denials of
        /// processes that exited before their pod was known).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only denials seen this recently: `30s`, `10m`, `2h`, `1d`.
        #[arg(long, value_parser = denials::parse_since)]
        since: Option<i64>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Output of the verbs that read the cluster.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Yaml,
    Json,
}

/// Output of `learn`: those of the other verbs, and the profile's manifest.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LearnFormat {
    Table,
    Yaml,
    Json,
    Manifest,
}

impl Cli {
    /// The rules between flags that clap's attributes cannot say: `--enforce` needs
    /// something to enforce in (`--apply`, `-o manifest` or `--output-dir`), and
    /// `-o manifest` only prints, so it does not go with `--apply`.
    pub fn check(&self) -> Result<(), clap::Error> {
        let Command::Learn {
            apply,
            enforce,
            output,
            output_dir,
            ..
        } = &self.command
        else {
            return Ok(());
        };
        let manifest = *output == LearnFormat::Manifest;
        let problem = if *apply && manifest {
            "--apply cannot be used with '--output manifest': -o manifest prints the profile as --apply would leave it and changes nothing (drop --apply, or apply the printed manifest)"
        } else if *enforce && !*apply && !manifest && output_dir.is_none() {
            "--enforce needs --apply (to enforce in the cluster), '--output manifest' or --output-dir (to enforce in the manifest)"
        } else {
            return Ok(());
        };
        let mut command = <Cli as clap::CommandFactory>::command();
        command.build();
        let learn = command
            .find_subcommand_mut("learn")
            .expect("learn is one of the commands");
        Err(learn.error(clap::error::ErrorKind::ArgumentConflict, problem))
    }
}

fn print<T: serde::Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        Format::Table => print!("{}", table()),
        Format::Yaml => print!("{}", yaml_serde::to_string(value)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

fn run_cluster(connection: &cluster::Connection, command: Command) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = connection.client().await?;
        match command {
            Command::Status { profile, kind, output } => {
                let rows = cluster::status(client, profile.as_deref(), kind).await?;
                let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                print(output, &rows, || cluster::status_table(&rows, colour))?;
                Ok(0)
            }
            Command::Explain { profile, kind, output } => {
                let explained = cluster::explain(client, &profile, kind).await?;
                print(output, &explained, || cluster::explain_text(&explained))?;
                Ok(0)
            }
            Command::Audit {
                namespace,
                fail_on,
                output,
            } => {
                let findings = audit::audit(client, namespace.as_deref()).await?;
                let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                print(output, &findings, || audit::table(&findings, colour))?;
                Ok(i32::from(findings.iter().any(|f| f.severity >= fail_on)))
            }
            Command::Learn {
                workload: Some(workload),
                namespace,
                quiet_for,
                duration,
                kind,
                apply,
                enforce,
                output,
                output_dir,
                ..
            } => {
                let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
                let req = workload::Request {
                    workload,
                    namespace,
                    kind,
                    quiet_for,
                    duration,
                    apply,
                    enforce,
                };
                learn_workload(client, &req, output, output_dir.as_deref()).await
            }
            Command::Learn {
                profile: Some(profile),
                kind,
                apply,
                enforce,
                output,
                output_dir,
                ..
            } => {
                let learned = learn::learn(client, &profile, kind, apply, enforce).await?;
                print_learned(&learned, output, output_dir.as_deref())?;
                Ok(0)
            }
            Command::Denials {
                pod,
                namespace,
                profile,
                since,
                output,
            } => {
                let filter = denials::Filter {
                    pod,
                    namespace,
                    profile,
                    since,
                };
                let found = denials::denials(client, &filter).await?;
                print(output, &found, || denials::table(&found))?;
                Ok(0)
            }
            _ => unreachable!("only the cluster verbs"),
        }
    })
}

/// `palisade learn --workload`: runs the whole loop, printing its progress on stderr, then
/// prints what was learned as `output` asks, or writes the manifests into `output_dir`.
/// Ctrl-C leaves what was created learning (exit code 130).
async fn learn_workload(
    client: kube::Client,
    req: &workload::Request,
    output: LearnFormat,
    output_dir: Option<&Path>,
) -> anyhow::Result<i32> {
    let outcome = tokio::select! {
        r = workload::run(client, req, |line| eprintln!("{line}")) => r?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: what was created stays and keeps learning; run the same command again to continue");
            return Ok(130);
        }
    };
    if output == LearnFormat::Table && output_dir.is_none() {
        for learned in &outcome.learned {
            println!("{}", learn::text(learned));
        }
    }
    match (output, output_dir) {
        (_, Some(dir)) => write_manifests(dir, &outcome.manifests)?,
        (LearnFormat::Manifest, None) => {
            for m in &outcome.manifests {
                print!("---\n{}", yaml_serde::to_string(m)?);
            }
        }
        (LearnFormat::Json, None) => println!("{}", serde_json::to_string_pretty(&outcome.learned)?),
        (LearnFormat::Yaml, None) => print!("{}", yaml_serde::to_string(&outcome.learned)?),
        (LearnFormat::Table, None) => {}
    }
    if !outcome.created.is_empty() {
        eprintln!("created: {}", outcome.created.join(", "));
    }
    Ok(0)
}

/// `palisade learn PROFILE`: what was learned as `output` asks, or its manifest (into
/// `output_dir`, or on stdout as YAML, with its notes on stderr).
fn print_learned(learned: &learn::Learned, output: LearnFormat, output_dir: Option<&Path>) -> anyhow::Result<()> {
    let format = match output {
        _ if output_dir.is_some() => None,
        LearnFormat::Manifest => None,
        LearnFormat::Table => Some(Format::Table),
        LearnFormat::Yaml => Some(Format::Yaml),
        LearnFormat::Json => Some(Format::Json),
    };
    if let Some(format) = format {
        return print(format, learned, || learn::text(learned));
    }
    for note in learn::manifest_notes(learned) {
        eprintln!("# {note}");
    }
    match output_dir {
        Some(dir) => write_manifests(dir, std::slice::from_ref(&learned.manifest)),
        None => {
            print!("{}", yaml_serde::to_string(&learned.manifest)?);
            Ok(())
        }
    }
}

/// Writes manifests under `dir` (see [`learn::write_manifests`]) and prints each path.
fn write_manifests(dir: &Path, manifests: &[Value]) -> anyhow::Result<()> {
    for path in learn::write_manifests(dir, manifests)? {
        println!("{}", path.display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Files to convert (`-` for stdin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Object name for a Docker/Podman JSON file (default: from the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Node architecture to evaluate Docker's `archMap` and `arches` for (default: this
    /// machine's). `amd64`, `arm64`, `x86_64`, or `SCMP_ARCH_*`.
    #[arg(long, value_parser = docker::parse_arch)]
    pub arch: Option<palisade_domain::seccomp::SeccompArch>,
    /// The nodes' kernel version for `minKernel` (default: newer than every minKernel).
    #[arg(long, value_parser = docker::parse_kernel)]
    pub kernel: Option<(u32, u32)>,
    /// A capability the containers have beyond the default set (repeatable, `CAP_SYS_ADMIN`).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// A default capability the containers do not have (repeatable).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// The local file of an SPO `oci://` base profile: `oci://REF=FILE` (repeatable).
    #[arg(long = "base")]
    pub base: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Yaml,
    Json,
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Err(e) = cli.check() {
        e.exit();
    }
    match cli.command {
        Command::Version => {
            println!("palisade {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "palisade", &mut std::io::stdout());
            0
        }
        Command::Convert(args) => match run_convert(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("palisade convert: {e:#}");
                1
            }
        },
        command => match run_cluster(&cli.connection, command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("palisade: {e:#}");
                1
            }
        },
    }
}

fn run_convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let mut target = docker::Target::default();
    if let Some(arch) = args.arch {
        target.arch = arch;
    }
    target.kernel = args.kernel;
    for cap in &args.cap_add {
        target.caps.insert(cap_name(cap));
    }
    for cap in &args.cap_drop {
        target.caps.remove(&cap_name(cap));
    }
    let mut bases = BTreeMap::new();
    for spec in &args.base {
        let (reference, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--base {spec:?}: expected oci://REF=FILE"))?;
        let text = read(Path::new(file))?;
        let doc: Value = yaml_serde::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        bases.insert(reference.to_string(), doc);
    }
    let options = Options {
        name: args.name.clone(),
        target,
        bases,
    };
    let mut objects = Vec::new();
    for file in &args.files {
        let text = read(file)?;
        let (mut converted, notes) = convert(&text, &file.display().to_string(), &options)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for note in notes {
            eprintln!("# {}: {note}", file.display());
        }
        objects.append(&mut converted);
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Output::Yaml => {
            for object in &objects {
                write!(out, "---\n{}", yaml_serde::to_string(object)?)?;
            }
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).map_err(Into::into);
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn cap_name(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// How inputs are evaluated.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Name for a Docker/Podman profile (default: from the source's file name).
    pub name: Option<String>,
    pub target: docker::Target,
    /// SPO `oci://` references → the SPO SeccompProfile document given for them.
    pub bases: BTreeMap<String, Value>,
}

/// Converts one input (any supported format, found from its content). `source` names it
/// (a file name, for the default object name). Returns Palisade objects and notes.
pub fn convert(text: &str, source: &str, options: &Options) -> Result<(Vec<Value>, Vec<String>), ConvertError> {
    let docker_doc = text
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str::<Value>(text).ok())
        .flatten()
        .filter(docker::looks_like_docker);
    if let Some(doc) = docker_doc {
        let (spec, notes) = docker::convert(&doc, &options.target)?;
        let name = options.name.clone().unwrap_or_else(|| name_from(source));
        let object = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": name}, "spec": spec});
        return Ok((vec![object], notes));
    }
    let manifest = text
        .lines()
        .any(|l| l.starts_with("apiVersion:") || l.starts_with("kind:"));
    if let Some(name) = raw_apparmor_name(text).filter(|_| !manifest) {
        if name != dns_name(&name) {
            return Err(ConvertError::Field {
                field: "profile".into(),
                message: format!(
                    "the AppArmor profile name {name:?} is not a valid object name; Palisade loads a profile under its object's name: rename the profile"
                ),
            });
        }
        // Palisade sets the mode from spec.mode and refuses a flag that contradicts it: a
        // profile written in complain mode becomes a Complain-mode object.
        let header = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("profile {name} ")))
            .unwrap_or_default();
        let mode = if header.contains("complain") {
            "Complain"
        } else {
            "Enforce"
        };
        let object = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name}, "spec": {"policy": text, "mode": mode}});
        return Ok((
            vec![object],
            vec![format!(
                "raw AppArmor profile {name}: spec.mode {mode}, as its flags say"
            )],
        ));
    }
    let mut objects = Vec::new();
    let mut notes = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let doc = <Value as serde::Deserialize>::deserialize(document).map_err(|e| ConvertError::Field {
            field: format!("document {}", i + 1),
            message: format!("not YAML or JSON: {e}"),
        })?;
        if doc.is_null() {
            continue;
        }
        // `kubectl get -o yaml` wraps objects in a List.
        let items = match doc.get("items").and_then(Value::as_array) {
            Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => items.clone(),
            _ => vec![doc],
        };
        for doc in items {
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?").to_string();
            if spo::is_spo(&doc) {
                let (mut converted, more) =
                    spo::convert(&doc, &options.bases).map_err(|e| e.within(&format!("{kind} {name}")))?;
                objects.append(&mut converted);
                notes.extend(more.into_iter().map(|n| format!("{kind} {name}: {n}")));
            } else if doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("palisade.dev/"))
            {
                notes.push(format!("{kind} {name}: already a Palisade object, kept as is"));
                objects.push(doc);
            } else {
                notes.push(format!("skipped {kind} {name}: not a profile Palisade converts"));
            }
        }
    }
    Ok((objects, notes))
}

/// The top-level profile name of a raw AppArmor policy (`profile NAME ... {`).
fn raw_apparmor_name(text: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|line| {
        let rest = line.strip_prefix("profile ")?;
        line.ends_with('{').then_some(())?;
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// A Kubernetes object name from a file name: its stem, lowercased, other characters `-`.
fn name_from(source: &str) -> String {
    let file = Path::new(source).file_name().and_then(|f| f.to_str()).unwrap_or(source);
    let stem = file.strip_suffix(".json").unwrap_or(file);
    dns_name(stem)
}

/// A valid DNS-1123 subdomain built from `s`.
pub fn dns_name(s: &str) -> String {
    let mapped: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c| c == '-' || c == '.');
    let mut name: String = trimmed.chars().take(253).collect();
    if name.is_empty() {
        name = "profile".into();
    }
    name
}

/// The union of names a set of objects defines, per kind (for tests and messages).
pub fn names(objects: &[Value]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_found_from_the_content() {
        let options = Options::default();
        let (objects, notes) = convert(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "/tmp/My_Profile.json",
            &options,
        )
        .unwrap();
        assert_eq!(objects[0]["kind"], "SeccompProfile");
        assert_eq!(objects[0]["metadata"]["name"], "my-profile");
        assert!(!notes.is_empty());

        let (objects, _) = convert(
            "profile web.aa flags=(attach_disconnected) {\n  /etc/** r,\n}\n",
            "x.aa",
            &options,
        )
        .unwrap();
        assert_eq!(objects[0]["kind"], "AppArmorProfile");
        assert_eq!(objects[0]["metadata"]["name"], "web.aa");
        let (objects, _) = convert(
            "profile learn flags=(attach_disconnected, complain) {\n}\n",
            "x.aa",
            &options,
        )
        .unwrap();
        assert_eq!(objects[0]["spec"]["mode"], "Complain");
        let err = convert("profile Web_1 {\n}\n", "x", &options).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("profile: the AppArmor profile name \"Web_1\""),
            "{err}"
        );

        // A manifest whose raw policy has a `profile` line is a manifest.
        let spo = "apiVersion: security-profiles-operator.x-k8s.io/v1alpha1\nkind: AppArmorProfile\nmetadata:\n  name: p\nspec:\n  policy: |\n    profile p {\n    }\n";
        let (objects, _) = convert(spo, "x.yaml", &options).unwrap();
        assert_eq!(objects[0]["spec"]["policy"], "profile p {\n}\n");

        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security-profiles-operator.x-k8s.io/v1beta1\n  kind: SeccompProfile\n  metadata: {name: a, namespace: n, resourceVersion: \"5\", uid: u}\n  spec: {defaultAction: SCMP_ACT_LOG}\n";
        let (objects, _) = convert(list, "spo.yaml", &options).unwrap();
        assert_eq!(
            objects[0]["metadata"],
            serde_json::json!({"name": "a"}),
            "server fields are not carried"
        );

        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n---\napiVersion: palisade.dev/v1alpha1\nkind: SeccompProfile\nmetadata:\n  name: s\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n";
        let (objects, notes) = convert(yaml, "x.yaml", &options).unwrap();
        assert_eq!(names(&objects), BTreeSet::from([("SeccompProfile".into(), "s".into())]));
        assert!(notes[0].starts_with("skipped Pod p"), "{notes:?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn learn_flags_go_together_only_as_they_make_sense() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["palisade", "learn", "web"].iter().chain(args))
                .and_then(|cli| cli.check().map(|()| cli))
                .map_err(|e| e.to_string())
        };
        for ok in [
            &[][..],
            &["--apply"],
            &["--apply", "--enforce"],
            &["-o", "manifest"],
            &["-o", "manifest", "--enforce"],
            &["--output-dir", "gitops"],
            &["--output-dir", "gitops", "--enforce"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}: {:?}", parse(ok));
        }
        for (bad, why) in [
            (&["--enforce"][..], "--enforce needs --apply"),
            (&["-o", "json", "--enforce"], "--enforce needs --apply"),
            (
                &["--apply", "-o", "manifest"],
                "--apply cannot be used with '--output manifest'",
            ),
            (&["--apply", "--output-dir", "d"], "cannot be used with"),
            (&["-o", "manifest", "--output-dir", "d"], "cannot be used with"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(
            Cli::try_parse_from(["palisade", "status", "-o", "manifest"]).is_err(),
            "only learn has manifests"
        );
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(dns_name("Docker Default!"), "docker-default");
        assert_eq!(dns_name("..x.."), "x");
        assert_eq!(dns_name("__"), "profile");
        assert_eq!(name_from("corpus/archguardian/bitnaminginx.sc"), "bitnaminginx.sc");
        assert_eq!(name_from("default.json"), "default");
    }
}
