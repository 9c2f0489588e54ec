//! Crash safety: the agent is killed with SIGKILL at random moments while it installs a
//! batch of 200 profiles, ten times. After each restart no partial or temporary file may
//! remain, and everything converges to the current generation's accepted content.

use std::time::Duration;

use kube::{Api, ResourceExt};
use palisade_domain::{NodeProfileState, ProfileKind};
use palisade_e2e::cluster::ProfileObject;
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const SECCOMP: usize = 150;
const APPARMOR: usize = 50;

/// A batch of 200 profile objects; `round` changes every profile's content.
fn batch(round: usize) -> serde_json::Value {
    let mut items = Vec::new();
    for i in 0..SECCOMP {
        items.push(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": format!("sc-{i}")},
            "spec": {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": round as u32 + 1,
                     "syscalls": [{"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": round as u32 + 1}]}}));
    }
    for i in 0..APPARMOR {
        items.push(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": format!("aa-{i}")},
            "spec": {"abstract": {"filesystem": {"readOnlyPaths": [format!("/srv/round-{round}/**")]}}}}));
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// The name and accepted digest of each profile of `api` whose current generation is accepted.
async fn accepted_digests<K>(api: &Api<K>) -> anyhow::Result<Vec<(String, String)>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + ProfileObject,
{
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| {
            let accepted = p.profile_status()?.accepted?;
            (Some(accepted.generation) == p.meta().generation).then(|| (p.name_any(), accepted.digest))
        })
        .collect())
}

/// A small deterministic generator, so a failing run can be repeated (seed printed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test]
async fn sigkill_during_batches_of_200_installs_leaves_no_partial_files_and_converges() {
    let (mut cluster, client, sp, aap) = Cluster::started(Options {
        nodes: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let seed = std::env::var("PALISADE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("fault seed {seed} (PALISADE_FAULT_SEED to repeat)");
    let mut rng = Lcg(seed);
    let node = "node-0";
    let file = cluster.dir().join("batch.json");

    for round in 0..10 {
        std::fs::write(&file, serde_json::to_vec(&batch(round)).unwrap()).unwrap();
        cluster.apply(&file).unwrap();
        let delay = rng.next(1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        cluster.kill_agent(node);
        cluster.start_agent(node).unwrap();

        let converged = wait_for(
            &format!("round {round} (killed after {delay} ms) to converge"),
            Duration::from_secs(120),
            || async {
                // Converged means: every profile's current generation is accepted, and the
                // node reports each installed at exactly the accepted digest (a report left
                // from the previous round, or from the killed agent, does not count).
                let mut accepted = std::collections::BTreeMap::new();
                for (name, digest) in accepted_digests(&sp).await? {
                    accepted.insert(("SeccompProfile", name), digest);
                }
                for (name, digest) in accepted_digests(&aap).await? {
                    accepted.insert(("AppArmorProfile", name), digest);
                }
                // What the node's report vouches for: installed at the current accepted content.
                let installed = palisade_e2e::node_standing(&client, node)
                    .await?
                    .into_iter()
                    .filter(|(_, on)| on.state == NodeProfileState::Installed && on.current)
                    .filter(|((kind, name), _)| {
                        let kind = match kind {
                            ProfileKind::SeccompProfile => "SeccompProfile",
                            ProfileKind::AppArmorProfile => "AppArmorProfile",
                        };
                        accepted.contains_key(&(kind, name.clone()))
                    })
                    .count();
                let files = cluster.seccomp_files(node);
                let all_current = (0..SECCOMP).all(|i| {
                    std::fs::read_to_string(cluster.seccomp_dir(node).join(format!("sc-{i}.json")))
                        .is_ok_and(|t| t.contains(&format!("\"errnoRet\": {}", round + 1)))
                });
                let loaded = cluster.apparmor_loaded(node);
                let aa_current = (0..APPARMOR).all(|i| loaded.contains_key(&format!("aa-{i}")));
                let aa_sources = (0..APPARMOR).all(|i| {
                    std::fs::read_to_string(cluster.node_dir(node).join(format!("state/apparmor/sources/aa-{i}")))
                        .is_ok_and(|t| t.contains(&format!("/srv/round-{round}/**")))
                });
                let ok = installed == SECCOMP + APPARMOR
                    && files.len() == SECCOMP
                    && all_current
                    && aa_current
                    && aa_sources;
                Ok(ok.then_some(files))
            },
        )
        .await
        .unwrap();

        // No temporary or partial file anywhere Palisade writes.
        let state = cluster.node_dir(node).join("state/apparmor");
        for dir in [
            cluster.seccomp_dir(node),
            state.join("sources"),
            state.join("compiled"),
            state.join("records"),
        ] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(".palisade-tmp-"),
                    "round {round}: leftover {name} in {}",
                    dir.display()
                );
            }
        }
        for f in &converged {
            let text = std::fs::read_to_string(cluster.seccomp_dir(node).join(f)).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("round {round}: {f} is not whole JSON: {e}"));
        }
    }
}

#[tokio::test]
async fn restarting_etcd_and_the_api_server_mid_rollout_loses_nothing() {
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    let file = cluster.dir().join("rollout.json");
    let list = |from: usize, to: usize| {
        let items: Vec<_> = (from..to)
            .map(|i| json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": format!("r-{i}")},
                "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}}))
            .collect();
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap()
    };
    std::fs::write(&file, list(0, 50)).unwrap();
    cluster.apply(&file).unwrap();
    // Mid-rollout: both stop, stay down for 3 s, come back on the same data.
    cluster.cp.restart(Duration::from_secs(3)).await.unwrap();
    std::fs::write(&file, list(50, 70)).unwrap();
    cluster.apply(&file).unwrap();

    let client = cluster.cp.client().await.unwrap();
    let sp: Api<palisade_domain::SeccompProfile> = Api::all(client);
    wait_for(
        "all 70 profiles Ready on 3 nodes after the restart",
        Duration::from_secs(180),
        || async {
            let items = sp.list(&Default::default()).await?.items;
            let ready = items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.nodes)
                        .is_some_and(|n| n.installed == 3 && n.targeted == 3)
                })
                .count();
            Ok((ready == 70).then_some(()))
        },
    )
    .await
    .unwrap();
    for node in ["node-0", "node-1", "node-2"] {
        assert_eq!(cluster.seccomp_files(node).len(), 70, "{node}");
    }
    // Nothing needed a manual restart: the operator and every agent are the same processes.
    for p in cluster
        .operators
        .iter()
        .flatten()
        .chain(cluster.agents.values().filter_map(|a| a.proc.as_ref()))
    {
        p.check_alive().unwrap();
    }
}
