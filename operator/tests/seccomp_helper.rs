//! The seccomp compile in a child process (the operator's own binary, `compile-seccomp`),
//! within the parser's budget: the same verdicts as in this process, and a profile that
//! needs more than its budget is Invalid with the numbers, never run on the async runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_domain::SeccompProfileSpec;
use palisade_domain::render::seccomp as sc_render;
use palisade_operator::validate::{ParserConfig, Verdict, compile_seccomp, compile_seccomp_isolated};
use serde_json::json;

fn helper() -> ParserConfig {
    ParserConfig {
        seccomp_helper: Some(env!("CARGO_BIN_EXE_palisade-operator").into()),
        ..ParserConfig::with_defaults("apparmor_parser", "/etc/apparmor.d")
    }
}

fn rendered(spec: serde_json::Value) -> Arc<sc_render::RenderedSeccomp> {
    let spec: SeccompProfileSpec = serde_json::from_value(spec).unwrap();
    Arc::new(sc_render::render("p", &spec, |_| None).unwrap())
}

#[tokio::test]
async fn the_helper_gives_the_verdicts_of_an_in_process_compile() {
    for spec in [
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "made_up_call"], "action": "SCMP_ACT_ALLOW"}]}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
               "syscalls": [{"names": ["stime"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
    ] {
        let r = rendered(spec.clone());
        let isolated = compile_seccomp_isolated(r.clone(), &helper()).await;
        let in_process = compile_seccomp(&r, &[]);
        assert_eq!(isolated, in_process, "{spec}");
    }
}

#[tokio::test]
async fn a_compile_over_its_budget_is_invalid() {
    let mut cfg = helper();
    // An address space too small for the helper to compile anything.
    cfg.budget.memory = 16 << 20;
    let r = rendered(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
    );
    let started = Instant::now();
    match compile_seccomp_isolated(r, &cfg).await {
        Err(Verdict::Invalid(m)) => assert!(m.contains("exceeded its memory budget"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
