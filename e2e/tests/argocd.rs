//! The Argo CD health check in examples/argocd/ (Lua), run by Argo CD's own interpreter
//! (gopher-lua, Lua 5.1 semantics, with only the libraries Argo CD opens for health
//! scripts: e2e/argocd-lua) against profile objects whose status the operator's own status
//! builder produced, in each state a profile can be in.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use palisade_domain::AcceptedContent;
use palisade_domain::common::{NodeCounts, NodeFailure, ProfileState};
use palisade_e2e::controlplane::repo_root;
use palisade_operator::status::{Acceptance, StatusInput, build};
use serde_json::{Value, json};

/// Runs health.lua on `obj` as Argo CD does and returns (status, message).
fn health(obj: &Value) -> (String, String) {
    let (status, message) = run_health(&repo_root().join("examples/argocd/health.lua"), obj).unwrap();
    (status, message)
}

fn run_health(script: &std::path::Path, obj: &Value) -> Result<(String, String), String> {
    let bin = palisade_e2e::go_tool("argocd-lua").unwrap();
    let mut child = Command::new(bin)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(obj).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok((
        v["status"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The interpreter is Argo CD's: Lua 5.1 (no integer division, no goto, no utf8 library)
/// and no string library, as Argo CD opens it for health scripts. A script using what
/// Lua 5.4 has and Argo CD's does not fails here.
#[test]
fn the_interpreter_is_argo_cds_not_a_newer_lua() {
    let dir = tempfile::tempdir().unwrap();
    let obj = json!({"metadata": {"name": "x"}});
    for (name, body) in [
        (
            "floor-division",
            "local x = 7 // 2\nreturn {status = \"Healthy\", message = tostring(x)}",
        ),
        ("utf8", "return {status = \"Healthy\", message = utf8.char(72)}"),
        (
            "string-library",
            "return {status = \"Healthy\", message = string.upper(\"x\")}",
        ),
    ] {
        let script = dir.path().join(format!("{name}.lua"));
        std::fs::write(&script, body).unwrap();
        assert!(
            run_health(&script, &obj).is_err(),
            "{name} ran: not Argo CD's interpreter"
        );
    }
    let script = dir.path().join("ok.lua");
    std::fs::write(
        &script,
        "return {status = \"Healthy\", message = obj.metadata.name .. tostring(#{1, 2})}",
    )
    .unwrap();
    assert_eq!(run_health(&script, &obj).unwrap(), ("Healthy".into(), "x2".into()));
}

struct Case {
    generation: i64,
    accepted: Result<(), &'static str>,
    state: ProfileState,
    counts: NodeCounts,
    failures: Vec<NodeFailure>,
    workloads: &'static [&'static str],
    deleting: bool,
    warnings: palisade_operator::validate::Warnings,
    left_out: Vec<palisade_operator::status::LeftOut>,
}

fn counts(targeted: u32, installed: u32, failed: u32, unsupported: u32) -> NodeCounts {
    NodeCounts {
        targeted,
        installed,
        failed,
        unsupported,
        pending: targeted - installed - failed - unsupported,
    }
}

impl Default for Case {
    fn default() -> Self {
        Self {
            generation: 1,
            accepted: Ok(()),
            state: ProfileState::Enabled,
            counts: counts(3, 3, 0, 0),
            failures: vec![],
            workloads: &[],
            deleting: false,
            warnings: Default::default(),
            left_out: vec![],
        }
    }
}

/// A SeccompProfile at `metadata.generation` whose status the operator built for `case`.
fn profile(metadata_generation: i64, case: Case) -> Value {
    let workloads: BTreeSet<String> = case.workloads.iter().map(|w| w.to_string()).collect();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = build(
        StatusInput {
            old: None,
            generation: case.generation,
            acceptance: match case.accepted {
                Ok(()) => Acceptance::Accepted,
                Err(m) if m.starts_with("transient: ") => Acceptance::Transient(&m["transient: ".len()..]),
                Err(m) => Acceptance::Invalid(m),
            },
            accepted: Some(AcceptedContent {
                generation: case.generation,
                digest: "0000000000000001".into(),
                bases: vec![],
            }),
            warnings: Some(case.warnings.clone()),
            state: case.state,
            counts: case.counts,
            failures: case.failures,
            left_out: case.left_out,
            localhost_profile: Some("palisade/web.json".into()),
            workloads: &workloads,
            deleting: case.deleting,
            learning: None,
        },
        &now,
    );
    let mut metadata = json!({"name": "web", "generation": metadata_generation});
    if case.deleting {
        metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        metadata["finalizers"] = json!(["palisade.dev/in-use"]);
    }
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": metadata,
           "spec": {"defaultAction": "SCMP_ACT_ERRNO"}, "status": serde_json::to_value(status).unwrap()})
}

#[test]
fn installed_everywhere_is_healthy() {
    let (status, message) = health(&profile(1, Case::default()));
    assert_eq!(status, "Healthy");
    assert_eq!(
        message,
        "installed on 3/3 targeted nodes (0 failed, 0 pending, 0 unsupported)"
    );
    // Nodes that cannot run the kind (no AppArmor, say) do not hold health back.
    let (status, _) = health(&profile(
        1,
        Case {
            counts: counts(3, 2, 0, 1),
            ..Case::default()
        },
    ));
    assert_eq!(status, "Healthy");
}

#[test]
fn still_installing_is_progressing() {
    let (status, message) = health(&profile(
        1,
        Case {
            counts: counts(3, 1, 0, 0),
            ..Case::default()
        },
    ));
    assert_eq!(status, "Progressing");
    assert!(message.contains("installed on 1/3"), "{message}");
}

#[test]
fn a_failed_node_is_degraded() {
    let case = Case {
        counts: counts(3, 2, 1, 0),
        failures: vec![NodeFailure {
            node: "node-2".into(),
            message: "disk full".into(),
        }],
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Degraded");
    assert!(message.contains("1 failed"), "{message}");
}

#[test]
fn a_rejected_profile_is_degraded_with_the_reason() {
    let case = Case {
        accepted: Err("policy line 3: syntax error, unexpected TOK_ID"),
        counts: counts(3, 0, 0, 0),
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Degraded");
    assert_eq!(message, "policy line 3: syntax error, unexpected TOK_ID");
}

#[test]
fn a_profile_that_targets_no_node_is_degraded() {
    let case = Case {
        counts: counts(0, 0, 0, 0),
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Degraded");
    assert!(
        message.contains("no node with a running Palisade agent matches"),
        "{message}"
    );
}

#[test]
fn validation_that_could_not_run_is_progressing_not_degraded() {
    let case = Case {
        accepted: Err("transient: apparmor_parser did not finish within 30s and was killed"),
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Progressing");
    assert!(
        message.starts_with("validation could not run: apparmor_parser"),
        "{message}"
    );
}

#[test]
fn a_disabled_profile_is_healthy() {
    let case = Case {
        state: ProfileState::Disabled,
        counts: counts(3, 0, 0, 0),
        ..Case::default()
    };
    assert_eq!(health(&profile(1, case)).0, "Healthy");
}

#[test]
fn a_new_generation_not_yet_validated_is_progressing() {
    // Status is for generation 1 (installed everywhere), the object is at generation 2.
    let (status, message) = health(&profile(2, Case::default()));
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
}

#[test]
fn a_new_profile_without_status_is_progressing() {
    let obj = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
                     "metadata": {"name": "web", "generation": 1}, "spec": {"policy": "profile web {}"}});
    assert_eq!(health(&obj).0, "Progressing");
}

#[test]
fn deletion_held_by_pods_is_progressing_and_names_them() {
    let case = Case {
        workloads: &["shop/web-0"],
        deleting: true,
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Progressing");
    assert!(message.contains("shop/web-0"), "{message}");
}

#[test]
fn ignored_syscalls_stay_healthy_with_the_warning_in_the_message() {
    let case = Case {
        warnings: palisade_operator::validate::Warnings {
            ignored_syscalls: vec![],
            syscalls: Some(("DenyFailsOpen", "1 syscall name(s) left out: stime".into())),
            weakened: None,
        },
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Healthy");
    assert!(
        message.ends_with("; warning (DenyFailsOpen): 1 syscall name(s) left out: stime"),
        "{message}"
    );
}

#[test]
fn rules_a_node_cannot_enforce_stay_healthy_with_the_warning_in_the_message() {
    let case = Case {
        left_out: vec![palisade_operator::status::LeftOut {
            node: "old-node".into(),
            rules: vec!["userns".into()],
        }],
        ..Case::default()
    };
    let (status, message) = health(&profile(1, case));
    assert_eq!(status, "Healthy");
    assert!(
        message.contains("; warning (RuleClassesLeftOut): installed on 1/3 targeted nodes")
            && message.ends_with("old-node (userns)"),
        "{message}"
    );
}

#[test]
fn argocd_cm_carries_health_lua_verbatim_for_both_kinds() {
    let dir = repo_root().join("examples/argocd");
    let script = std::fs::read_to_string(dir.join("health.lua")).unwrap();
    let cm: Value = yaml_serde::from_str(&std::fs::read_to_string(dir.join("argocd-cm.yaml")).unwrap()).unwrap();
    for kind in ["AppArmorProfile", "SeccompProfile"] {
        let key = format!("resource.customizations.health.palisade.dev_{kind}");
        assert_eq!(cm["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
}
