//! Every profile in `examples/` passes the schema's CEL rules, renders, and compiles: seccomp
//! with libseccomp (inheritance resolved among the examples), AppArmor with the real parser.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use palisade_domain::render::{apparmor, seccomp};
use palisade_domain::{AppArmorProfile, SeccompProfile};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn example_documents() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut docs = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in yaml_serde::Deserializer::from_str(&text) {
                docs.push(Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
            }
        }
    }
    docs
}

/// The examples of kind `K`, each checked against the CEL rules of its CRD's schema.
fn examples_of<K: CustomResourceExt + DeserializeOwned>(docs: &[Value]) -> Vec<K> {
    let crd = serde_json::to_value(K::crd()).unwrap();
    let schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .expect("the CRD has a schema");
    docs.iter()
        .filter(|d| d["kind"] == crd["spec"]["names"]["kind"])
        .map(|d| {
            Validator::new().validate(schema, d, None).expect("CEL rules pass");
            serde_json::from_value(d.clone()).unwrap()
        })
        .collect()
}

#[test]
fn every_example_profile_is_valid_and_compiles() {
    let docs = example_documents();
    let seccomp: Vec<SeccompProfile> = examples_of(&docs);
    let apparmor: Vec<AppArmorProfile> = examples_of(&docs);
    assert!(
        seccomp.len() >= 2 && apparmor.len() >= 2,
        "examples of both kinds, with inheritance"
    );

    let by_name: HashMap<String, &SeccompProfile> =
        seccomp.iter().map(|p| (p.metadata.name.clone().unwrap(), p)).collect();
    for profile in &seccomp {
        let name = profile.metadata.name.as_deref().unwrap();
        let oci = seccomp::resolve(name, &profile.spec, |n| by_name.get(n).map(|p| &p.spec))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        seccomp::compile(&oci).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    for profile in &apparmor {
        let name = profile.metadata.name.as_deref().unwrap();
        let text = apparmor::profile_text(name, &profile.spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut child = Command::new("apparmor_parser")
            .args([
                "--skip-kernel-load",
                "--skip-cache",
                "--quiet",
                "--names",
                "-I",
                "/etc/apparmor.d",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("apparmor_parser is installed");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
    }
}
