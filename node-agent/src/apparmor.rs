//! Loading, verifying and removing AppArmor profiles with the real `apparmor_parser`.
//!
//! Each profile Palisade loads has its source and an ownership record under the state
//! directory; a profile loaded in the kernel without a record is not Palisade's and is never
//! replaced or removed.
//!
//! Simulated kernel (tests only, `--simulate-apparmor-kernel`): this machine's kernel has no
//! AppArmor LSM, so the apparmorfs directory is a plain directory. The real parser still
//! compiles every profile and writes the binary policy into it (`--subdomainfs`), given the
//! kernel features from a file; the one fake is that the agent keeps that directory's
//! `profiles` list (`name (mode)`), which a real kernel keeps. It fills that list the way the
//! kernel does, from the binary policy the parser wrote (each profile's name and mode
//! flags), never from what the agent meant to load, so `verify` checks the parser's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use palisade_crds::AppArmorMode;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::files;

/// What the agent needs to drive the parser.
#[derive(Clone, Debug)]
pub struct AppArmorConfig {
    pub parser: PathBuf,
    pub apparmorfs: PathBuf,
    pub include_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Simulated kernel: the features file the parser is told the kernel has.
    pub simulated_kernel_features: Option<PathBuf>,
    /// Longest one parser run may take; a hung parser is killed and the load fails.
    pub parser_timeout: std::time::Duration,
}

/// Palisade's record of a profile it loaded: the ownership marker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub managed_by: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub digest: String,
    pub mode: AppArmorMode,
    /// Written before the parser runs, cleared after the kernel took the profile: a record
    /// that still says `loading` (a crash, a parser failure) is Palisade's, but its content
    /// is not known to be in the kernel, so the next sync loads it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loading: bool,
}

const MANAGED_BY: &str = "palisade";

pub struct AppArmor {
    cfg: AppArmorConfig,
}

impl AppArmor {
    pub fn new(cfg: AppArmorConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(cfg.state_dir.join("apparmor"))?;
        std::fs::create_dir_all(cfg.state_dir.join("apparmor-cache"))?;
        files::clean_temp_files(&cfg.state_dir.join("apparmor"))?;
        Ok(Self { cfg })
    }

    fn source_path(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("apparmor").join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.cfg
            .state_dir
            .join("apparmor")
            .join(format!("{name}.palisade.json"))
    }

    fn profiles_file(&self) -> PathBuf {
        self.cfg.apparmorfs.join("profiles")
    }

    /// Whether AppArmor can be used here: `Ok(parser version)` or `Err(reason)`.
    pub async fn detect(&self) -> Result<String, String> {
        if !self.profiles_file().is_file() {
            return Err(format!(
                "AppArmor is not enabled on this node ({} is missing)",
                self.profiles_file().display()
            ));
        }
        let out = self
            .run(Command::new(&self.cfg.parser).arg("--version"))
            .await
            .map_err(|e| format!("apparmor_parser ({}) cannot run: {e}", self.cfg.parser.display()))?;
        let version = String::from_utf8_lossy(&out.stdout);
        let first = version.lines().next().unwrap_or_default();
        Ok(first.rsplit(' ').next().unwrap_or(first).to_string())
    }

    /// Profiles the kernel has loaded: name → mode.
    pub fn loaded(&self) -> std::io::Result<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.profiles_file())?;
        Ok(parse_profiles(&text))
    }

    /// Palisade's records, by profile name.
    pub fn records(&self) -> std::io::Result<BTreeMap<String, Record>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(self.cfg.state_dir.join("apparmor"))? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".palisade.json") {
                let record: Record = match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    Some(r) => r,
                    None => continue,
                };
                if record.managed_by == MANAGED_BY {
                    out.insert(record.name.clone(), record);
                }
            }
        }
        Ok(out)
    }

    /// Runs the parser with the timeout; a run that exceeds it is killed.
    async fn run(&self, cmd: &mut Command) -> Result<std::process::Output, String> {
        cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
        match tokio::time::timeout(self.cfg.parser_timeout, cmd.output()).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("running apparmor_parser: {e}")),
            Err(_) => Err(format!(
                "apparmor_parser did not finish within {}s and was killed",
                self.cfg.parser_timeout.as_secs()
            )),
        }
    }

    fn parser(&self) -> Command {
        let mut cmd = Command::new(&self.cfg.parser);
        cmd.arg("--subdomainfs").arg(&self.cfg.apparmorfs);
        if let Some(features) = &self.cfg.simulated_kernel_features {
            cmd.arg("--kernel-features").arg(features);
        }
        cmd
    }

    /// Loads (or replaces) a profile Palisade owns and verifies the kernel lists it.
    /// Returns the parser's run time. Errors are the parser's own words, trimmed.
    pub async fn load(&self, record: &Record, text: &str) -> Result<std::time::Duration, String> {
        let source = self.source_path(&record.name);
        files::write_atomic(&source, text.as_bytes(), 0o600)
            .map_err(|e| format!("writing {}: {e}", source.display()))?;
        // Claim the name before the kernel sees the profile, so a crash between the load and
        // the record never leaves a loaded profile without its owner.
        let previous = self.read_record(&record.name);
        self.write_record(&Record {
            loading: true,
            ..record.clone()
        })?;
        // A load the parser refuses leaves the kernel as it was: so is the record.
        let undo = || match &previous {
            Some(p) => self.write_record(p),
            None => files::remove_durable(&self.record_path(&record.name)).map_err(|e| e.to_string()),
        };
        let mut cmd = self.parser();
        cmd.args(["--replace", "--write-cache", "--quiet"])
            .arg("--cache-loc")
            .arg(self.cfg.state_dir.join("apparmor-cache"))
            .arg("-I")
            .arg(&self.cfg.include_dir);
        if record.mode == AppArmorMode::Complain {
            cmd.arg("--Complain");
        }
        cmd.arg(&source);
        let start = Instant::now();
        // Killed or timed out: whether the kernel took it is unknown; the record keeps
        // saying `loading`, so the next sync loads it again.
        let out = self.run(&mut cmd).await?;
        let took = start.elapsed();
        if !out.status.success() {
            let message = parser_message(&out.stderr, out.status);
            undo()?;
            return Err(message);
        }
        if self.cfg.simulated_kernel_features.is_some() {
            self.simulate_loaded(&source, record.mode == AppArmorMode::Complain)
                .await?;
        }
        self.verify(&record.name, record.mode)?;
        self.write_record(record)?;
        Ok(took)
    }

    /// Palisade's record of one profile, if it has one.
    pub fn read_record(&self, name: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(name)).ok()?;
        serde_json::from_slice::<Record>(&bytes)
            .ok()
            .filter(|r| r.managed_by == MANAGED_BY)
    }

    fn write_record(&self, record: &Record) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(record).expect("record serializes");
        files::write_atomic(&self.record_path(&record.name), &bytes, 0o600)
            .map_err(|e| format!("writing the ownership record: {e}"))
    }

    /// Checks that the kernel lists `name` in `mode` (what runtimes check before starting a
    /// confined container).
    pub fn verify(&self, name: &str, mode: AppArmorMode) -> Result<(), String> {
        let loaded = self
            .loaded()
            .map_err(|e| format!("reading {}: {e}", self.profiles_file().display()))?;
        let want = mode_word(mode);
        match loaded.get(name) {
            Some(m) if m == want => Ok(()),
            Some(m) => Err(format!("the kernel lists {name} in {m} mode, not {want}")),
            None => Err(format!("the kernel does not list {name} after loading it")),
        }
    }

    /// Unloads a profile Palisade owns and forgets it. Refuses one it does not own.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        if !self.record_path(name).exists() {
            return Err(format!(
                "{name} is not managed by Palisade on this node; not removing it"
            ));
        }
        let source = self.source_path(name);
        if self.loaded().map(|l| l.contains_key(name)).unwrap_or(false) {
            let out = self
                .run(self.parser().args(["--remove", "--quiet"]).arg(&source))
                .await?;
            if !out.status.success() {
                return Err(parser_message(&out.stderr, out.status));
            }
            if self.cfg.simulated_kernel_features.is_some() {
                self.simulate_removed(name)?;
            }
        }
        files::remove_durable(&self.record_path(name)).map_err(|e| e.to_string())?;
        files::remove_durable(&source).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Simulated kernel: lists every profile of the binary policy the parser produces for
    /// this load (same source, include dir and mode option, `-S` to stdout: the parser writes
    /// one profile per `.replace` write, which a plain file cannot keep apart), in the mode
    /// that policy gives it, children included, as a kernel would.
    async fn simulate_loaded(&self, source: &Path, complain: bool) -> Result<(), String> {
        let mut cmd = self.parser();
        cmd.args(["-S", "--quiet", "-I"]).arg(&self.cfg.include_dir);
        if complain {
            cmd.arg("--Complain");
        }
        let out = self.run(cmd.arg(source)).await?;
        if !out.status.success() {
            return Err(parser_message(&out.stderr, out.status));
        }
        let profiles = binary_policy_profiles(&out.stdout);
        if profiles.is_empty() {
            return Err("the parser produced no profile for the (simulated) kernel".into());
        }
        let mut loaded = self.loaded().map_err(|e| e.to_string())?;
        for (name, _) in &profiles {
            let top = name.split("//").next().unwrap_or(name);
            loaded.retain(|n, _| n != top && !n.starts_with(&format!("{top}//")));
        }
        loaded.extend(profiles.into_iter().map(|(n, m)| (n, m.to_string())));
        self.write_simulated(&loaded)?;
        // The parser appends binary policy to the simulated .replace; keep it from growing.
        let _ = std::fs::write(self.cfg.apparmorfs.join(".replace"), b"");
        Ok(())
    }

    fn simulate_removed(&self, name: &str) -> Result<(), String> {
        let mut loaded = self.loaded().map_err(|e| e.to_string())?;
        loaded.retain(|n, _| n != name && !n.starts_with(&format!("{name}//")));
        self.write_simulated(&loaded)
    }

    fn write_simulated(&self, loaded: &BTreeMap<String, String>) -> Result<(), String> {
        let text: String = loaded.iter().map(|(n, m)| format!("{n} ({m})\n")).collect();
        files::write_atomic(&self.profiles_file(), text.as_bytes(), 0o644).map_err(|e| e.to_string())
    }
}

/// The profiles a binary policy stream (what `apparmor_parser` writes to the kernel's
/// `.replace`) defines, each with the mode the kernel would give it: the profile's packed
/// mode flag, or complain for every profile when the stream's version carries the parser's
/// force-complain bit (`--Complain`). One blob per profile, each opening with its version.
pub fn binary_policy_profiles(bytes: &[u8]) -> Vec<(String, &'static str)> {
    const VERSION: &[u8] = b"\x04\x08\x00version\x00\x02";
    const PROFILE: &[u8] = b"\x04\x08\x00profile\x00\x07\x05";
    const FLAGS: &[u8] = b"\x04\x06\x00flags\x00\x07\x02";
    const FORCE_COMPLAIN: u32 = 0x800;
    let find = |from: usize, what: &[u8]| {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(what.len()).position(|w| w == what))
            .map(|i| from + i)
    };
    let u32_at = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    let mut out = vec![];
    let mut version = 0;
    let mut pos = 0;
    while let Some(p) = find(pos, PROFILE) {
        if let Some(v) = find(pos, VERSION).filter(|&v| v < p) {
            version = u32_at(v + VERSION.len()).unwrap_or(0);
        }
        let name_at = p + PROFILE.len();
        let Some(len) = bytes
            .get(name_at..name_at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        else {
            break;
        };
        let Some(name) = bytes.get(name_at + 2..name_at + 2 + len) else {
            break;
        };
        let name = String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(name)).into_owned();
        // flags: u32 hat flags, then (after its 0x02 type byte) u32 mode.
        let mode = find(name_at, FLAGS)
            .and_then(|f| u32_at(f + FLAGS.len() + 5))
            .unwrap_or(0);
        let word = if version & FORCE_COMPLAIN != 0 {
            "complain"
        } else {
            match mode {
                0 => "enforce",
                1 => "complain",
                2 => "kill",
                3 => "unconfined",
                _ => "user",
            }
        };
        out.push((name, word));
        pos = name_at;
    }
    out
}

fn mode_word(mode: AppArmorMode) -> &'static str {
    match mode {
        AppArmorMode::Enforce => "enforce",
        AppArmorMode::Complain => "complain",
    }
}

/// Parses the kernel's `profiles` list: one `name (mode)` a line.
pub fn parse_profiles(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let open = line.rfind(" (")?;
            let mode = line[open + 2..].strip_suffix(')')?;
            Some((line[..open].to_string(), mode.to_string()))
        })
        .collect()
}

/// The parser's error, trimmed: its own lines (line numbers kept), without cache chatter.
fn parser_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Cache read/write disabled"))
        .collect();
    if lines.is_empty() {
        return format!("apparmor_parser failed ({status})");
    }
    let message = lines.join("; ");
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
    fn parses_the_kernel_profiles_list() {
        let text = "web (enforce)\nweb//child (enforce)\n/usr/bin/man (complain)\nodd name (x) (kill)\n";
        let parsed = parse_profiles(text);
        assert_eq!(parsed["web"], "enforce");
        assert_eq!(parsed["web//child"], "enforce");
        assert_eq!(parsed["/usr/bin/man"], "complain");
        assert_eq!(parsed["odd name (x)"], "kill");
    }

    #[test]
    fn parser_messages_keep_the_line_and_drop_chatter() {
        let stderr = b"Cache read/write disabled: interface file missing.\nAppArmor parser error for /s/p in profile /s/p at line 2: Invalid mode\n";
        let status = std::process::Command::new("false").status().unwrap();
        assert_eq!(
            parser_message(stderr, status),
            "AppArmor parser error for /s/p in profile /s/p at line 2: Invalid mode"
        );
        assert!(parser_message(b"", status).starts_with("apparmor_parser failed"));
    }
}
