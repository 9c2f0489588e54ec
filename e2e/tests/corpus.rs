//! The real-world corpus (`../shared/corpus/`, read as it is): profiles nobody on this
//! project wrote (Docker's and Podman's defaults, generated profiles for nine Helm charts,
//! SPO's examples) convert with `palisade convert` (SPO's manifests are applied with only
//! their apiVersion changed), are Accepted and Ready on simulated nodes, and what lands on
//! the nodes enforces what the runtime would load from the source.
//!
//! The reference for Docker/Podman-format files is Docker's own loader
//! (github.com/moby/profiles/seccomp, built by e2e/scripts/go-tool-bin.sh); for SPO's
//! SeccompProfiles it is the SPO spec itself, which SPO writes to the node as the OCI profile.

use std::collections::BTreeMap;
use std::path::Path;

use palisade_cli::docker::{DEFAULT_CAPS, Target, native_arch};
use palisade_cli::{Options, convert};
use palisade_domain::SeccompProfileSpec;
use palisade_domain::render::seccomp::{compile_rendered, render};
use palisade_e2e::cluster::{apply_json, wait_installed};
use palisade_e2e::corpus::{corpus_dir, corpus_files, differences, docker_oracle, effective, host_kernel};
use palisade_e2e::{Cluster, Options as ClusterOptions};
use serde_json::{Value, json};

const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

fn is_docker_format(rel: &Path) -> bool {
    matches!(rel.extension().and_then(|e| e.to_str()), Some("json" | "sc"))
}

/// Docker's default capabilities plus `extra`.
fn caps(extra: &[&str]) -> Vec<String> {
    DEFAULT_CAPS.iter().chain(extra).map(|c| c.to_string()).collect()
}

#[test]
fn docker_and_podman_format_profiles_convert_to_what_docker_itself_loads() {
    let dir = corpus_dir().unwrap();
    let kernel = host_kernel().unwrap();
    let mut checked = Vec::new();
    for rel in corpus_files(&dir).unwrap().into_iter().filter(|r| is_docker_format(r)) {
        let text = std::fs::read_to_string(dir.join(&rel)).unwrap();
        // Docker's default set, and a container with two more capabilities (which turns on
        // rules under includes.caps and turns off rules under excludes.caps).
        for extra in [&[][..], &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"][..]] {
            let caps = caps(extra);
            let options = Options {
                name: None,
                target: Target {
                    arch: native_arch(),
                    caps: caps.iter().cloned().collect(),
                    kernel: Some(kernel),
                },
                bases: Default::default(),
            };
            let (objects, notes) = convert(&text, &rel.display().to_string(), &options)
                .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            assert_eq!(objects.len(), 1, "{}", rel.display());
            assert!(
                notes.iter().any(|n| n.starts_with("evaluated includes/excludes")),
                "{}: says what it evaluated: {notes:?}",
                rel.display()
            );
            let name = objects[0]["metadata"]["name"].as_str().unwrap().to_string();
            let spec: SeccompProfileSpec = serde_json::from_value(objects[0]["spec"].clone()).unwrap();
            let rendered = render(&name, &spec, |_| None).unwrap();
            compile_rendered(&rendered).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            let ours = effective(&serde_json::from_slice(&rendered.bytes).unwrap()).unwrap();
            let cap_refs: Vec<&str> = caps.iter().map(String::as_str).collect();
            let reference = effective(&docker_oracle(&dir.join(&rel), &cap_refs).unwrap()).unwrap();
            let diff = differences(&ours, &reference);
            assert!(
                diff.is_empty(),
                "{} with {extra:?}: Palisade's file differs from what Docker loads:\n{}",
                rel.display(),
                diff.join("\n")
            );
            assert!(
                reference.rules.values().map(|r| r.len()).sum::<usize>() > 0,
                "{}: a profile with rules",
                rel.display()
            );
            checked.push(rel.display().to_string());
        }
    }
    // docker/default.json, podman/seccomp.json, nine .sc files; two capability sets each.
    assert_eq!(checked.len(), 22, "{checked:?}");
}

/// The SPO SeccompProfile spec as the OCI profile SPO writes for it.
fn spo_as_oci(spec: &Value) -> Value {
    let mut oci = json!({"defaultAction": spec["defaultAction"]});
    for key in ["architectures", "syscalls"] {
        if let Some(v) = spec.get(key) {
            oci[key] = v.clone();
        }
    }
    oci
}

/// Every corpus file converted, and what the file on a node must enforce for each seccomp
/// object (by name), applied in rounds: corpus files reuse names (three variants of SPO's
/// recorded sleep profile, two of a syscall list), so a later variant updates the object.
struct Converted {
    rounds: Vec<Vec<Value>>,
    expected: Vec<BTreeMap<String, palisade_e2e::corpus::Effective>>,
}

fn convert_corpus(dir: &Path) -> Converted {
    let mut rounds: Vec<Vec<Value>> = Vec::new();
    let mut expected: Vec<BTreeMap<String, palisade_e2e::corpus::Effective>> = Vec::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let options = Options::default();
    for rel in corpus_files(dir).unwrap() {
        let text = std::fs::read_to_string(dir.join(&rel)).unwrap();
        let (objects, _) =
            convert(&text, &rel.display().to_string(), &options).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let sources: Vec<Value> = if rel.extension().is_some_and(|e| e == "yaml") {
            yaml_serde::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .filter(|d: &Value| !d.is_null())
                .collect()
        } else {
            vec![]
        };
        for object in objects {
            // A binding attaches a profile to pods and is no profile itself: the CLI's e2e
            // test applies the corpus binding, the converter's unit tests check its fields.
            if object["kind"] == "ProfileBinding" {
                continue;
            }
            let kind = object["kind"].as_str().unwrap().to_string();
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let round = seen.entry((kind.clone(), name.clone())).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(vec![]);
                expected.push(BTreeMap::new());
            }
            if kind == "SeccompProfile" {
                let reference = if is_docker_format(&rel) {
                    docker_oracle(&dir.join(&rel), &[]).unwrap()
                } else {
                    let source = sources
                        .iter()
                        .find(|s| s["kind"] == "SeccompProfile" && s["metadata"]["name"] == name)
                        .expect("the SPO source document");
                    spo_as_oci(&source["spec"])
                };
                expected[*round].insert(name.clone(), effective(&reference).unwrap());
            }
            // SPO's own manifests are applied with only their apiVersion changed (the
            // converter's output for them is checked in its unit tests): the field names
            // mean the same.
            let object = sources
                .iter()
                .find(|s| s["kind"] == object["kind"] && s["metadata"]["name"] == object["metadata"]["name"])
                .map(|source| {
                    let mut raw = source.clone();
                    raw["apiVersion"] = json!("palisade.dev/v1alpha1");
                    raw
                })
                .unwrap_or(object);
            rounds[*round].push(object);
            *round += 1;
        }
    }
    Converted { rounds, expected }
}

/// The whole corpus with the agents writing where SPO did (`operator/`): every object is
/// Accepted and Ready on every node, status names `operator/<name>.json`, every seccomp
/// file enforces what the runtime would load from the source, and every AppArmor profile
/// is loaded in the mode its spec says.
#[tokio::test]
async fn the_whole_corpus_is_accepted_and_ready_where_spo_put_it() {
    let dir = corpus_dir().unwrap();
    let converted = convert_corpus(&dir);
    let objects: usize = converted.rounds.iter().map(Vec::len).sum();
    assert!(objects >= 30, "{objects} objects converted");

    let (cluster, client, sp, aap) = Cluster::started(ClusterOptions {
        seccomp_subdir: "operator".into(),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();

    for (round, objects) in converted.rounds.iter().enumerate() {
        for object in objects {
            apply_json(&client, object.clone())
                .await
                .unwrap_or_else(|e| panic!("round {round}: {}: {e:#}", object["metadata"]["name"]));
        }
        for object in objects {
            let name = object["metadata"]["name"].as_str().unwrap();
            if object["kind"] == "SeccompProfile" {
                let status = match wait_installed(&sp, name, 3).await {
                    Ok(s) => s,
                    Err(e) => {
                        let status = sp.get(name).await.ok().and_then(|p| p.status);
                        panic!("round {round}: SeccompProfile {name}: {e:#}\n{status:#?}");
                    }
                };
                assert_eq!(
                    status.localhost_profile.as_deref(),
                    Some(format!("operator/{name}.json").as_str())
                );
                let want = &converted.expected[round][name];
                for node in NODES {
                    let file = std::fs::read(cluster.seccomp_dir(node).join(format!("{name}.json"))).unwrap();
                    let got = effective(&serde_json::from_slice(&file).unwrap()).unwrap();
                    let diff = differences(&got, want);
                    assert!(diff.is_empty(), "{node}: {name}:\n{}", diff.join("\n"));
                }
            } else {
                if let Err(e) = wait_installed(&aap, name, 3).await {
                    let status = aap.get(name).await.ok().and_then(|p| p.status);
                    panic!("round {round}: AppArmorProfile {name}: {e:#}\n{status:#?}");
                }
                let mode = match object["spec"]["mode"].as_str() {
                    Some("Complain") => "complain",
                    _ => "enforce",
                };
                for node in NODES {
                    assert_eq!(
                        cluster.apparmor_loaded(node).get(name).map(String::as_str),
                        Some(mode),
                        "{node}: {name}"
                    );
                }
            }
        }
    }

    // What users should hear about: Docker's default names a syscall this libseccomp does
    // not know (accepted, with the warning); SPO's complain-block-high-risk denies names
    // x86_64 lacks under an allowing default (the deny fails open where a kernel has them).
    let docker = sp.get("default").await.unwrap().status.unwrap();
    let warning = docker
        .conditions
        .iter()
        .find(|c| c.type_ == "SyscallsIgnored")
        .expect("Docker's default warns");
    assert!(
        warning.message.contains("Unknown to the operator's libseccomp"),
        "{}",
        warning.message
    );
    assert!(!docker.ignored_syscalls.is_empty());
    let risky = sp
        .get("profile-complain-block-high-risk")
        .await
        .unwrap()
        .status
        .unwrap();
    let warning = risky
        .conditions
        .iter()
        .find(|c| c.type_ == "SyscallsIgnored")
        .expect("a warning");
    assert_eq!(warning.reason, "DenyFailsOpen", "{}", warning.message);
    assert!(warning.message.contains("vm86"), "{}", warning.message);
}
