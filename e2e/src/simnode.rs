//! Simulated nodes for the scale benchmark only (kubemark-style): many lightweight node
//! loops in one process, each acting on the API as a real agent does — its own watch of
//! SeccompProfiles, its own NodeProfileStatus written by the agent's own report code (same
//! format, same server-side apply, same field manager), its own heartbeat Lease renewed by
//! the agent's own heartbeat code.
//!
//! What is simulated: the node itself. Installing is instant and always succeeds (no file is
//! written, no rendering is checked against the accepted digest); the node reports no
//! AppArmor, so it watches only seccomp profiles. Nothing here checks the operator's output:
//! the benchmark reads the profiles' status, which the real operator aggregates.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use palisade_agent::report::StatusWriter;
use palisade_domain::{NodeCapabilities, NodeProfile, NodeProfileState, ProfileKind, ProfileState, SeccompProfile};
use tokio::sync::watch;

/// What one simulated node keeps of a profile: what an agent installs.
#[derive(PartialEq)]
struct Held {
    uid: String,
    generation: i64,
    /// The accepted content's digest (`None`: nothing accepted yet).
    accepted: Option<String>,
    enabled: bool,
}

/// Runs one simulated node until `shutdown`; `writes` counts its status writes.
pub async fn run(
    client: Client,
    node: String,
    namespace: String,
    lease_seconds: u32,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node_obj = nodes.get(&node).await.with_context(|| format!("Node {node}"))?;
    let mut writer = StatusWriter::new(client.clone(), &node, &namespace);
    writer.ensure_object(&node_obj).await?;
    let heartbeat = writer.heartbeat(lease_seconds);
    let hb_stop = shutdown.clone();
    tokio::spawn(async move { heartbeat.run(hb_stop).await });

    let capabilities = NodeCapabilities {
        apparmor: false,
        apparmor_reason: Some("simulated node: seccomp only".into()),
        seccomp: true,
        ..Default::default()
    };
    let mut held: HashMap<String, Held> = HashMap::new();
    let mut relist: Option<HashMap<String, Held>> = None;
    let mut events =
        Box::pin(watcher(Api::<SeccompProfile>::all(client), watcher::Config::default()).default_backoff());
    let mut next_write = tokio::time::Instant::now();
    loop {
        let first = tokio::select! {
            e = events.next() => e,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        let Some(first) = first else { return Ok(()) };
        // As the agent: let a burst land, then one report for the batch.
        tokio::time::sleep(Duration::from_millis(15)).await;
        tokio::time::sleep_until(next_write).await;
        let mut batch = vec![first];
        while let Some(Some(e)) = futures::FutureExt::now_or_never(events.next()) {
            batch.push(e);
        }
        // Only what an agent acts on counts (uid, generation, accepted content, state): the
        // operator's count updates in the status change nothing here, as on a real node.
        let mut dirty = false;
        for event in batch.into_iter().flatten() {
            match event {
                watcher::Event::Init => relist = Some(HashMap::new()),
                watcher::Event::InitApply(p) => {
                    if let Some(r) = relist.as_mut() {
                        r.insert(p.name_any(), held_of(&p));
                    }
                }
                watcher::Event::InitDone => {
                    held = relist.take().unwrap_or_default();
                    dirty = true;
                }
                watcher::Event::Apply(p) => {
                    let now = held_of(&p);
                    dirty |= held.get(&p.name_any()) != Some(&now);
                    held.insert(p.name_any(), now);
                }
                watcher::Event::Delete(p) => dirty |= held.remove(&p.name_any()).is_some(),
            }
        }
        if relist.is_some() || !dirty {
            continue;
        }
        let entries: Vec<NodeProfile> = held
            .iter()
            .filter(|(_, h)| h.enabled)
            .filter_map(|(name, h)| {
                Some(NodeProfile {
                    kind: ProfileKind::SeccompProfile,
                    name: name.clone(),
                    uid: h.uid.clone(),
                    generation: h.generation,
                    digest: h.accepted.clone()?,
                    state: NodeProfileState::Installed,
                    message: String::new(),
                    not_enforced: vec![],
                })
            })
            .collect();
        let started = tokio::time::Instant::now();
        let changed = writer.changed_entries(&entries);
        match writer.report(&capabilities, entries).await {
            Ok(true) => {
                next_write = tokio::time::Instant::now() + palisade_agent::run::write_gap(started.elapsed(), changed)
            }
            Ok(false) => {}
            Err(e) => {
                eprintln!("simulated node {node}: report failed: {e}");
                writer.invalidate();
            }
        }
    }
}

fn held_of(p: &SeccompProfile) -> Held {
    Held {
        uid: p.uid().unwrap_or_default(),
        generation: p.metadata.generation.unwrap_or_default(),
        accepted: palisade_domain::accepted_content(p.status.as_ref()).map(|a| a.digest.clone()),
        enabled: p.spec.state == ProfileState::Enabled,
    }
}
