//! What the node's kernel, AppArmor and container runtime offer, for the node's report:
//! read from the kernel's own files and the Node object, each within a bound (a node's
//! kernel and its Node are trusted only so far), each absent rather than an error when it
//! cannot be read.
//!
//! The kernel's files are read through the agent's `--proc-root`: in the chart that is the
//! container's own `/proc`, whose `sys/kernel` is the node kernel's (a container shares its
//! kernel; the release and the seccomp actions are not namespaced).

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use palisade_domain::NodeCapabilities;
use palisade_domain::nodestatus::capability_limits as limits;

/// Most directory entries looked at when listing one (a kernel or host directory with more
/// is hostile or broken; what was seen is reported).
const MAX_SCANNED: usize = 4096;
/// Most bytes read of one kernel file.
const MAX_FILE_BYTES: u64 = 4096;

/// What the kernel and the host offer: kernel release, AppArmor features and ABIs, seccomp
/// actions. The parser version and the runtime come from elsewhere.
pub fn read(proc_root: &Path, apparmorfs: &Path, include_dir: &Path) -> NodeCapabilities {
    NodeCapabilities {
        kernel_version: kernel_version(proc_root),
        apparmor_features: names(&apparmorfs.join("features"), limits::MAX_APPARMOR_FEATURES),
        apparmor_abi: names(&include_dir.join("abi"), limits::MAX_APPARMOR_ABI),
        seccomp_actions: seccomp_actions(proc_root),
        ..NodeCapabilities::default()
    }
}

/// `<proc>/sys/kernel/osrelease`: the kernel release (`uname -r`).
pub fn kernel_version(proc_root: &Path) -> Option<String> {
    let (text, _) = read_head(&proc_root.join("sys/kernel/osrelease"))?;
    version_text(&text)
}

/// `<proc>/sys/kernel/seccomp/actions_avail`: the seccomp actions the kernel supports, in
/// its order; words that are not action names are left out, and so is a last word cut off
/// by the bound.
pub fn seccomp_actions(proc_root: &Path) -> Vec<String> {
    let Some((text, cut)) = read_head(&proc_root.join("sys/kernel/seccomp/actions_avail")) else {
        return vec![];
    };
    let mut words: Vec<&str> = text.split_ascii_whitespace().collect();
    if cut && !text.ends_with(|c: char| c.is_ascii_whitespace()) {
        words.pop();
    }
    let mut out: Vec<String> = Vec::new();
    for w in words {
        let valid = w.len() <= limits::MAX_SECCOMP_ACTION_LEN && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if valid && !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
        if out.len() == limits::MAX_SECCOMP_ACTIONS {
            break;
        }
    }
    out
}

/// The names in a directory, sorted: at most `max` (the first in order), each a plain name
/// of at most [`limits::MAX_APPARMOR_NAME_LEN`] bytes (`[A-Za-z0-9._-]`, not hidden); at
/// most [`MAX_SCANNED`] entries are looked at. A missing directory has none.
pub fn names(dir: &Path, max: usize) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = BTreeSet::new();
    for entry in entries.take(MAX_SCANNED).flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if plain_name(name) {
            out.insert(name.to_string());
            if out.len() > max {
                out.pop_last();
            }
        }
    }
    out.into_iter().collect()
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_APPARMOR_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The capabilities with what the Node says of itself: the container runtime
/// (`status.nodeInfo.containerRuntimeVersion`), and the kernel release when the kernel's
/// own file could not be read.
pub fn with_node(capabilities: &NodeCapabilities, node: &Node) -> NodeCapabilities {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    NodeCapabilities {
        container_runtime: info.and_then(|i| version_text(&i.container_runtime_version)),
        kernel_version: capabilities
            .kernel_version
            .clone()
            .or_else(|| info.and_then(|i| version_text(&i.kernel_version))),
        ..capabilities.clone()
    }
}

/// A version string as reported: trimmed, printable ASCII without spaces, at most
/// [`limits::MAX_VERSION_LEN`] bytes; anything else is no version.
fn version_text(text: &str) -> Option<String> {
    let t = text.trim();
    let valid = !t.is_empty() && t.len() <= limits::MAX_VERSION_LEN && t.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| t.to_string())
}

/// The first [`MAX_FILE_BYTES`] of a file as text, and whether there was more.
fn read_head(path: &Path) -> Option<(String, bool)> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
    let cut = bytes.len() as u64 > MAX_FILE_BYTES;
    bytes.truncate(MAX_FILE_BYTES as usize);
    Some((String::from_utf8_lossy(&bytes).into_owned(), cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, NodeSystemInfo};

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn reads_a_debian_node() {
        let dir = tempfile::tempdir().unwrap();
        let (proc, fs, inc) = (dir.path().join("proc"), dir.path().join("aafs"), dir.path().join("etc"));
        write(&proc, "sys/kernel/osrelease", b"6.12.117+deb13-amd64\n");
        write(
            &proc,
            "sys/kernel/seccomp/actions_avail",
            b"kill_process kill_thread trap errno user_notif trace log allow\n",
        );
        for f in ["userns", "file", "network", "io_uring", "mqueue", "caps"] {
            std::fs::create_dir_all(fs.join("features").join(f)).unwrap();
        }
        for abi in ["4.0", "3.0", "kernel-5.4-vanilla"] {
            write(&inc, &format!("abi/{abi}"), b"abi {}\n");
        }
        let caps = read(&proc, &fs, &inc);
        assert_eq!(caps.kernel_version.as_deref(), Some("6.12.117+deb13-amd64"));
        assert_eq!(
            caps.apparmor_features,
            ["caps", "file", "io_uring", "mqueue", "network", "userns"]
        );
        assert_eq!(caps.apparmor_abi, ["3.0", "4.0", "kernel-5.4-vanilla"]);
        assert_eq!(
            caps.seccomp_actions,
            [
                "kill_process",
                "kill_thread",
                "trap",
                "errno",
                "user_notif",
                "trace",
                "log",
                "allow"
            ]
        );
        // Nothing else is claimed from these files.
        assert!(!caps.apparmor && !caps.seccomp && caps.container_runtime.is_none());
    }

    #[test]
    fn missing_files_are_absent_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let nowhere = dir.path().join("nowhere");
        assert_eq!(read(&nowhere, &nowhere, &nowhere), NodeCapabilities::default());
        // A directory where a file should be, and an empty file.
        std::fs::create_dir_all(dir.path().join("sys/kernel/osrelease")).unwrap();
        write(dir.path(), "sys/kernel/seccomp/actions_avail", b"");
        assert_eq!(kernel_version(dir.path()), None);
        assert!(seccomp_actions(dir.path()).is_empty());
    }

    #[test]
    fn a_features_directory_of_ten_thousand_entries_and_giant_names_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let features = dir.path().join("features");
        std::fs::create_dir_all(&features).unwrap();
        for i in 0..10_000 {
            std::fs::write(features.join(format!("f{i:05}")), b"").unwrap();
        }
        std::fs::write(features.join("a".repeat(255)), b"").unwrap();
        std::fs::write(features.join("bad name"), b"").unwrap();
        std::fs::write(features.join(".hidden"), b"").unwrap();
        std::fs::write(features.join("caf\u{e9}"), b"").unwrap();
        let got = names(&features, limits::MAX_APPARMOR_FEATURES);
        assert_eq!(got.len(), limits::MAX_APPARMOR_FEATURES);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted: {got:?}");
        assert!(got.iter().all(|n| n.starts_with('f') && n.len() == 6), "{got:?}");
    }

    #[test]
    fn a_ten_megabyte_actions_file_is_read_only_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = b"kill_process errno ".to_vec();
        text.resize(10 * 1024 * 1024, b'x');
        write(dir.path(), "sys/kernel/seccomp/actions_avail", &text);
        // The giant last word is cut by the bound and left out.
        assert_eq!(seccomp_actions(dir.path()), ["kill_process", "errno"]);

        let many: String = (0..100_000).map(|i| format!("a{} ", "_".repeat(i % 40))).collect();
        write(dir.path(), "sys/kernel/seccomp/actions_avail", many.as_bytes());
        let got = seccomp_actions(dir.path());
        assert!(got.len() <= limits::MAX_SECCOMP_ACTIONS, "{}", got.len());
        assert!(got.iter().all(|w| w.len() <= limits::MAX_SECCOMP_ACTION_LEN));
        assert!(got.iter().all(|w| w.bytes().all(|b| b == b'a' || b == b'_')));

        write(dir.path(), "sys/kernel/osrelease", &vec![b'6'; 10 * 1024 * 1024]);
        assert_eq!(kernel_version(dir.path()), None);
        write(dir.path(), "sys/kernel/osrelease", b"6.1.0 with spaces\n");
        assert_eq!(kernel_version(dir.path()), None);
    }

    fn node(kernel: &str, runtime: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                node_info: Some(NodeSystemInfo {
                    kernel_version: kernel.into(),
                    container_runtime_version: runtime.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_runtime_comes_from_the_node_and_the_kernel_from_the_kernel_first() {
        let from_kernel = NodeCapabilities {
            kernel_version: Some("6.1.0-28-amd64".into()),
            ..Default::default()
        };
        let caps = with_node(&from_kernel, &node("6.1.0-other", "containerd://1.6.20"));
        assert_eq!(caps.kernel_version.as_deref(), Some("6.1.0-28-amd64"));
        assert_eq!(caps.container_runtime.as_deref(), Some("containerd://1.6.20"));
        // No kernel file: the Node's word; nothing on the Node: nothing.
        let caps = with_node(&NodeCapabilities::default(), &node("6.1.0-other", ""));
        assert_eq!(caps.kernel_version.as_deref(), Some("6.1.0-other"));
        assert_eq!(caps.container_runtime, None);
        assert_eq!(
            with_node(&NodeCapabilities::default(), &Node::default()),
            NodeCapabilities::default()
        );
        // A giant or multi-line runtime string is no version.
        let caps = with_node(&from_kernel, &node("", &"x".repeat(10_000)));
        assert_eq!(caps.container_runtime, None);
        let caps = with_node(&from_kernel, &node("", "containerd://1.6\nevil"));
        assert_eq!(caps.container_runtime, None);
    }
}
