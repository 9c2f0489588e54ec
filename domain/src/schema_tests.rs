//! The generated schemas say what the API promises: every CEL rule is evaluated here
//! client-side (kube's CEL validator) against objects that should pass and fail, and the
//! bounds and enums are checked in the schema itself. The same tables run against a real
//! kube-apiserver in the e2e suite.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::Validator;
use serde_json::{Value, json};

use crate::{apparmor_crd, node_profile_status_crd, seccomp_crd};

fn schema(crd: &CustomResourceDefinition) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn aap(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name}, "spec": spec})
}

fn sp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name}, "spec": spec})
}

/// Validates and returns the failure messages (empty when the object passes).
fn cel_errors(crd: &CustomResourceDefinition, object: &Value) -> Vec<String> {
    match Validator::new().validate(&schema(crd), object, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_rejected(crd: &CustomResourceDefinition, object: Value, expected: &str) {
    let errors = cel_errors(crd, &object);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected {expected:?} for {object}, got {errors:?}"
    );
}

fn assert_accepted(crd: &CustomResourceDefinition, object: Value) {
    assert_eq!(cel_errors(crd, &object), Vec::<String>::new(), "{object}");
}

/// The sub-schema at a dotted path of property names (`[]` steps into array items).
fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(schema, |s, step| {
        if step == "[]" {
            &s["items"]
        } else {
            &s["properties"][step]
        }
    })
}

#[test]
fn apparmor_policy_and_abstract_are_exclusive() {
    let crd = apparmor_crd();
    let msg = "exactly one of spec.policy and spec.abstract must be set";
    assert_rejected(&crd, aap("p", json!({})), msg);
    assert_rejected(&crd, aap("p", json!({"policy": "profile p {}", "abstract": {}})), msg);
    assert_accepted(&crd, aap("p", json!({"policy": "profile p {}"})));
    assert_accepted(&crd, aap("p", json!({"abstract": {}})));
}

#[test]
fn apparmor_paths_are_absolute_and_cannot_break_out() {
    let crd = apparmor_crd();
    let msg = "must be an absolute path without control characters, quotes, backslashes or '#'";
    for field in ["readOnlyPaths", "writeOnlyPaths", "readWritePaths", "denyPaths"] {
        for bad in ["relative", "/a\"b", "/a\nb", "/a#b", "/a\\b", "/a\u{7f}"] {
            assert_rejected(&crd, aap("p", json!({"abstract": {"filesystem": {field: [bad]}}})), msg);
        }
        assert_accepted(
            &crd,
            aap(
                "p",
                json!({"abstract": {"filesystem": {field: ["/srv/my data/{a,b}/**"]}}}),
            ),
        );
    }
    for field in ["allowedExecutables", "allowedLibraries"] {
        assert_rejected(
            &crd,
            aap("p", json!({"abstract": {"executable": {field: ["bin/sh"]}}})),
            msg,
        );
        assert_accepted(
            &crd,
            aap("p", json!({"abstract": {"executable": {field: ["/bin/sh"]}}})),
        );
    }
}

#[test]
fn profile_names_are_apparmor_and_file_safe() {
    let name_msg = "metadata.name must be at most 200 lowercase letters";
    for crd in [apparmor_crd(), seccomp_crd()] {
        let obj = |name: &str| {
            if crd.spec.names.kind == "AppArmorProfile" {
                aap(name, json!({"abstract": {}}))
            } else {
                sp(name, json!({"defaultAction": "SCMP_ACT_ALLOW"}))
            }
        };
        assert_accepted(&crd, obj("web-1.example"));
        assert_rejected(&crd, obj(&"a".repeat(201)), name_msg);
        assert_rejected(&crd, obj("Upper"), name_msg);
        assert_rejected(&crd, obj("-leading"), name_msg);
    }
    // Names of the runtimes' default profiles: whoever loads one first confines every
    // RuntimeDefault container on the node.
    for reserved in [
        "unconfined",
        "docker-default",
        "cri-containerd.apparmor.d",
        "crio-default-1.29",
        "runc",
    ] {
        assert_rejected(
            &apparmor_crd(),
            aap(reserved, json!({"abstract": {}})),
            "metadata.name is reserved",
        );
        assert!(crate::apparmor::reserved_name(reserved, &[]).is_some(), "{reserved}");
    }
    assert_accepted(&apparmor_crd(), aap("docker-defaults-web", json!({"abstract": {}})));
    assert!(crate::apparmor::reserved_name("team-a", &["team-*".into()]).is_some());
    assert!(crate::apparmor::reserved_name("web", &["team-*".into()]).is_none());
    assert_accepted(
        &seccomp_crd(),
        sp("unconfined", json!({"defaultAction": "SCMP_ACT_ALLOW"})),
    );
}

#[test]
fn seccomp_listener_path_is_absolute() {
    let crd = seccomp_crd();
    let spec = |p: &str| sp("s", json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": p}));
    assert_rejected(&crd, spec("run/agent.sock"), "listenerPath must be an absolute path");
    assert_accepted(&crd, spec("/run/agent.sock"));
}

#[test]
fn seccomp_schema_bounds_and_enums() {
    let s = schema(&seccomp_crd());
    let spec = at(&s, "spec");
    assert_eq!(spec["required"], json!(["defaultAction"]));
    let actions = json!([
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY"
    ]);
    assert_eq!(at(&s, "spec.defaultAction")["enum"], actions);
    assert_eq!(at(&s, "spec.syscalls.[].action")["enum"], actions);
    assert_eq!(
        at(&s, "spec.syscalls.[].args.[].op")["enum"],
        json!([
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ"
        ])
    );
    assert!(
        at(&s, "spec.architectures.[]")["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ARCH_X86_64"))
    );
    assert_eq!(
        at(&s, "spec.flags.[]")["enum"],
        json!([
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        ])
    );
    assert_eq!(at(&s, "spec.syscalls.[].args")["maxItems"], 6);
    assert_eq!(at(&s, "spec.syscalls.[].args.[].index")["minimum"], 0.0);
    assert_eq!(at(&s, "spec.syscalls.[].args.[].index")["maximum"], 5.0);
    assert_eq!(at(&s, "spec.syscalls.[].names")["minItems"], 1);
    assert_eq!(at(&s, "spec.syscalls.[].names.[]")["minLength"], 1);
    // A pattern, not CEL: a CEL rule over 1024 names exceeds the API server's cost budget.
    assert_eq!(at(&s, "spec.syscalls.[].names.[]")["pattern"], "^[a-z0-9_]+$");
    assert_eq!(at(&s, "spec.syscalls")["maxItems"], 1024);
    assert_eq!(at(&s, "spec.state")["enum"], json!(["Enabled", "Disabled"]));
}

#[test]
fn apparmor_schema_bounds_and_enums() {
    let s = schema(&apparmor_crd());
    assert_eq!(at(&s, "spec.mode")["enum"], json!(["Enforce", "Complain"]));
    assert_eq!(at(&s, "spec.state")["enum"], json!(["Enabled", "Disabled"]));
    assert_eq!(at(&s, "spec.policy")["maxLength"], 262144);
    assert_eq!(at(&s, "spec.abstract.filesystem.readOnlyPaths")["maxItems"], 256);
    assert_eq!(at(&s, "spec.abstract.filesystem.readOnlyPaths.[]")["maxLength"], 4096);
    assert!(
        at(&s, "spec.abstract.capability.allowedCapabilities.[]")["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("net_bind_service"))
    );
}

#[test]
fn every_field_is_described_for_kubectl_explain() {
    fn walk(path: &str, s: &Value, missing: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                // Standard Kubernetes types (metadata, LabelSelector, Condition) bring their own.
                if sub.get("description").is_none() && !["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = s.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in [apparmor_crd(), seccomp_crd(), node_profile_status_crd()] {
        let mut missing = vec![];
        walk(&crd.spec.names.kind, &schema(&crd), &mut missing);
        assert!(missing.is_empty(), "fields without a description: {missing:?}");
    }
}

#[test]
fn crds_are_cluster_scoped_with_short_names_category_and_status() {
    for (crd, short) in [
        (apparmor_crd(), "aap"),
        (seccomp_crd(), "sp"),
        (node_profile_status_crd(), "nps"),
    ] {
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.group, "palisade.dev");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["palisade".to_string()]));
        assert!(crd.spec.versions[0].subresources.as_ref().unwrap().status.is_some());
    }
    let columns: Vec<String> = apparmor_crd().spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(columns, ["Mode", "Ready", "Installed", "Targeted", "Warning", "Age"]);
}

#[test]
fn node_selector_operators_are_an_enum_and_values_follow_the_operator() {
    for crd in [seccomp_crd(), apparmor_crd()] {
        let s = schema(&crd);
        let expr = at(&s, "spec.nodeSelector.matchExpressions.[]");
        assert_eq!(
            expr["properties"]["operator"]["enum"],
            json!(["In", "NotIn", "Exists", "DoesNotExist"]),
            "an unknown operator is refused by the schema"
        );
        assert_eq!(at(&s, "spec.nodeSelector.matchExpressions")["maxItems"], 32);
    }
    let crd = seccomp_crd();
    let with = |e: Value| {
        sp(
            "s",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "nodeSelector": {"matchExpressions": [e]}}),
        )
    };
    assert_rejected(
        &crd,
        with(json!({"key": "zone", "operator": "In"})),
        "In and NotIn need at least one value",
    );
    assert_rejected(
        &crd,
        with(json!({"key": "zone", "operator": "NotIn", "values": []})),
        "In and NotIn need at least one value",
    );
    assert_rejected(
        &crd,
        with(json!({"key": "zone", "operator": "Exists", "values": ["a"]})),
        "Exists and DoesNotExist take none",
    );
    assert_accepted(&crd, with(json!({"key": "zone", "operator": "In", "values": ["a"]})));
    assert_accepted(&crd, with(json!({"key": "zone", "operator": "DoesNotExist"})));
}
