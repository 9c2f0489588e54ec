//! What every node's agent reported, and what the operator expects each node to hold.
//!
//! A node's report lists only its exceptions (profiles not installed at their accepted
//! content) plus, per kind, the count and digest of the set it holds installed. The
//! operator keeps, per node, the same kind of set for what it expects there: every enabled
//! profile with accepted content whose selector matches the node's labels. A profile
//! missing from a node's exceptions is installed there exactly when the node's set equals
//! the expected one less its exceptions, so one report of a few entries vouches for every
//! profile on the node. Both sets are sums of per-profile keys, so a change to one profile
//! or one node updates them in O(nodes) or O(profiles).
//!
//! A profile judged pending on a node because the sets disagree (the agent has not caught up,
//! or the operator has not) waits on that node: it is reconciled again once the node's report
//! and its expected set agree (after a report or an expectation change), or the node goes or
//! changes labels. Every other change routes only the profiles it names.
//! Memory follows nodes + profiles + exceptions, not nodes × profiles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::runtime::watcher;
use palisade_domain::nodestatus::{Standing, standing};
use palisade_domain::selector::selects;
use palisade_domain::{InstalledSet, NodeProfileState, NodeProfileStatus, ProfileKind};

pub use crate::triggers::Key;
use crate::triggers::dedup;

use palisade_domain::learn::{LearnedProfile, Learning};
pub use palisade_domain::nodestatus::digest_key;

/// One node's exception for one profile, as aggregation reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub uid: String,
    pub generation: i64,
    /// [`digest_key`] of the entry's digest.
    pub digest: u64,
    pub state: NodeProfileState,
    pub message: String,
}

/// Where one profile stands on one node, as far as the reports tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnNode {
    /// The node has not reported yet.
    NoReport,
    /// The node cannot enforce this kind.
    Unsupported,
    /// Installed at the accepted content (vouched for by the node's installed set).
    Installed,
    /// Not listed, but the node's installed set disagrees with what is expected there, so
    /// nothing can be said yet.
    Unverified,
    /// Listed as an exception.
    Entry(Reported),
}

/// What a node must hold of one profile: its key in installed sets, and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Want {
    pub key: u64,
    pub selector: Option<LabelSelector>,
}

impl Want {
    /// An enabled profile with accepted content; `None` for anything nodes do not hold.
    pub fn of(
        kind: ProfileKind,
        uid: &str,
        enabled: bool,
        accepted_digest: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Option<Self> {
        let digest = accepted_digest.filter(|_| enabled)?;
        Some(Self {
            key: palisade_domain::installed_key(kind, uid, digest),
            selector: selector.cloned(),
        })
    }
}

fn slot(kind: ProfileKind) -> usize {
    match kind {
        ProfileKind::AppArmorProfile => 0,
        ProfileKind::SeccompProfile => 1,
    }
}

/// One node's report, kept small.
#[derive(Clone, Default, PartialEq)]
struct Report {
    /// Per kind (AppArmor, seccomp): whether the node can enforce it.
    supported: [bool; 2],
    /// Per kind: the installed set as reported (`None` when the summary does not parse).
    installed: [Option<InstalledSet>; 2],
    /// Exceptions by (kind, name).
    exceptions: BTreeMap<Key, Reported>,
    /// Installed profiles whose rule classes the node's kernel does not all mediate, by
    /// (kind, name): (uid, the content's digest, the classes left out).
    partial: BTreeMap<Key, (String, String, Vec<String>)>,
}

impl Report {
    /// The report an object carries; `None` before its agent's first status write (an
    /// object without a status vouches for nothing, and claims nothing unsupported).
    fn of(nps: &NodeProfileStatus) -> Option<Self> {
        let s = nps.status.as_ref()?;
        Some(Self {
            supported: [s.capabilities.apparmor, s.capabilities.seccomp],
            installed: [
                InstalledSet::from_summary(&s.installed.apparmor),
                InstalledSet::from_summary(&s.installed.seccomp),
            ],
            exceptions: s
                .exceptions
                .iter()
                .map(|e| {
                    (
                        (e.kind, e.name.clone()),
                        Reported {
                            uid: e.uid.clone(),
                            generation: e.generation,
                            digest: digest_key(&e.digest),
                            state: e.state,
                            message: e.message.clone(),
                        },
                    )
                })
                .collect(),
            partial: s
                .partial
                .iter()
                .map(|e| {
                    (
                        (e.kind, e.name.clone()),
                        (
                            e.uid.clone(),
                            e.digest.clone(),
                            // A node writes what it likes here: only class words are shown.
                            e.not_enforced
                                .iter()
                                .filter(|c| palisade_domain::nodestatus::is_rule_class(c))
                                .take(palisade_runtime::budget::MAX_NOT_ENFORCED)
                                .cloned()
                                .collect(),
                        ),
                    )
                })
                .collect(),
        })
    }
}

/// A node as expectations see it: its labels and, per kind, the set it should hold.
#[derive(Default)]
struct Expected {
    labels: BTreeMap<String, String>,
    sets: [InstalledSet; 2],
}

#[derive(Default)]
struct Inner {
    reports: HashMap<String, Report>,
    wants: HashMap<Key, Want>,
    nodes: HashMap<String, Expected>,
    /// Profiles judged pending on a node for want of a matching installed set.
    waiters: HashMap<String, HashSet<Key>>,
}

impl Inner {
    /// Every profile waiting on the node (it went away or changed labels).
    fn wake(&mut self, node: &str) -> Vec<Key> {
        self.waiters
            .remove(node)
            .map(|w| w.into_iter().collect())
            .unwrap_or_default()
    }

    /// The profiles waiting on the node whose kind the node's report now vouches for (its
    /// installed set matches), or cannot run. While the sets disagree, waking them would
    /// only judge them pending again: a flood of reports costs no reconciles until a node
    /// has caught up.
    fn wake_settled(&mut self, node: &str) -> Vec<Key> {
        let settled = [ProfileKind::AppArmorProfile, ProfileKind::SeccompProfile].map(|k| self.settled(node, k));
        let Some(waiting) = self.waiters.get_mut(node) else {
            return vec![];
        };
        let woken: Vec<Key> = waiting.iter().filter(|k| settled[slot(k.0)]).cloned().collect();
        for k in &woken {
            waiting.remove(k);
        }
        if waiting.is_empty() {
            self.waiters.remove(node);
        }
        woken
    }

    /// Whether the node's report of `kind` agrees with what the operator expects there (or
    /// the node cannot run the kind).
    fn settled(&self, node: &str, kind: ProfileKind) -> bool {
        let (Some(report), Some(exp)) = (self.reports.get(node), self.nodes.get(node)) else {
            return false;
        };
        if !report.supported[slot(kind)] {
            return true;
        }
        let mut expected = exp.sets[slot(kind)];
        for (k, _) in report.exceptions.iter().filter(|(k, _)| k.0 == kind) {
            if let Some(w) = self.wants.get(k)
                && selects(w.selector.as_ref(), &exp.labels)
            {
                expected.remove(w.key);
            }
        }
        report.installed[slot(kind)] == Some(expected)
    }

    /// The node's expected set of `kind` from scratch.
    fn expected_set(&self, labels: &BTreeMap<String, String>, kind: ProfileKind) -> InstalledSet {
        let mut set = InstalledSet::default();
        for ((k, _), want) in &self.wants {
            if *k == kind && selects(want.selector.as_ref(), labels) {
                set.add(want.key);
            }
        }
        set
    }

    /// Where profile `key` (whose current want is `now`) stands on `node`.
    fn on_node(&self, node: &str, labels: &BTreeMap<String, String>, key: &Key, now: Option<&Want>) -> OnNode {
        let Some(report) = self.reports.get(node) else {
            return OnNode::NoReport;
        };
        let kind = key.0;
        let standing = standing(
            report.supported[slot(kind)],
            report.exceptions.get(key),
            || self.expected(node, labels, key, now, report),
            report.installed[slot(kind)],
        );
        match standing {
            Standing::Unsupported => OnNode::Unsupported,
            Standing::Listed(e) => OnNode::Entry(e.clone()),
            Standing::Installed => OnNode::Installed,
            Standing::Unverified => OnNode::Unverified,
        }
    }

    /// The set of `key`'s kind that `node` should hold, with this profile as the caller sees
    /// it now (`now`), less every listed exception: from the sets the index keeps, not built
    /// again. `None` while the index cannot tell (the caller knows labels the index does not).
    fn expected(
        &self,
        node: &str,
        labels: &BTreeMap<String, String>,
        key: &Key,
        now: Option<&Want>,
        report: &Report,
    ) -> Option<InstalledSet> {
        let kind = key.0;
        let (now, node_exp) = (now?, self.nodes.get(node)?);
        // The expected set was built from the labels the index knows; until it knows the
        // caller's (a label just changed), nothing can be vouched for.
        if !selects(now.selector.as_ref(), labels) || &node_exp.labels != labels {
            return None;
        }
        let mut expected = node_exp.sets[slot(kind)];
        if let Some(indexed) = self.wants.get(key)
            && selects(indexed.selector.as_ref(), &node_exp.labels)
        {
            expected.remove(indexed.key);
        }
        if selects(now.selector.as_ref(), &node_exp.labels) {
            expected.add(now.key);
        }
        for (k, _) in report.exceptions.iter().filter(|(k, _)| k.0 == kind) {
            if let Some(w) = self.wants.get(k)
                && selects(w.selector.as_ref(), &node_exp.labels)
            {
                expected.remove(w.key);
            }
        }
        Some(expected)
    }
}

#[derive(Default)]
pub struct NodeReports {
    inner: Mutex<Inner>,
    /// Built during a relist, swapped in at its end.
    relist: Mutex<Option<HashMap<String, Report>>>,
    ready: tokio::sync::Notify,
    synced: std::sync::atomic::AtomicBool,
    /// What each node learned (`status.learned`), by node.
    learned: Mutex<HashMap<String, Vec<LearnedProfile>>>,
    /// Built during a relist, swapped in at its end (a report deleted meanwhile goes).
    relist_learned: Mutex<Option<HashMap<String, Vec<LearnedProfile>>>>,
}

impl NodeReports {
    /// Applies one watch event; returns the profiles to look at again: those whose exceptions
    /// changed, and those waiting on a node whose report changed.
    pub fn apply(&self, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        let mut keys = self.apply_learned(&event);
        keys.extend(self.apply_reports(event));
        dedup(keys)
    }

    /// Keeps what nodes learned; returns the profiles whose learning changed.
    fn apply_learned(&self, event: &watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        let learned_of = |nps: &NodeProfileStatus| nps.status.as_ref().map(|s| s.learned.clone()).unwrap_or_default();
        let (node, new) = match event {
            watcher::Event::Init => {
                *self.relist_learned.lock().expect("lock") = Some(HashMap::new());
                return vec![];
            }
            watcher::Event::InitApply(nps) => {
                let list = learned_of(nps);
                if let Some(relist) = self.relist_learned.lock().expect("lock").as_mut()
                    && !list.is_empty()
                {
                    relist.insert(nps.name_any(), list);
                }
                return vec![];
            }
            watcher::Event::InitDone => {
                let fresh = self.relist_learned.lock().expect("lock").take().unwrap_or_default();
                let mut learned = self.learned.lock().expect("lock");
                let mut keys: Vec<Key> = learned
                    .values()
                    .chain(fresh.values())
                    .flatten()
                    .map(|l| (l.kind, l.name.clone()))
                    .collect();
                keys.sort();
                keys.dedup();
                *learned = fresh;
                return keys;
            }
            watcher::Event::Apply(nps) => (nps.name_any(), learned_of(nps)),
            watcher::Event::Delete(nps) => (nps.name_any(), vec![]),
        };
        let mut learned = self.learned.lock().expect("lock");
        let old = learned.get(&node).cloned().unwrap_or_default();
        if old == new {
            return vec![];
        }
        let mut keys: Vec<Key> = old
            .iter()
            .filter(|o| !new.contains(o))
            .chain(new.iter().filter(|n| !old.contains(n)))
            .map(|l| (l.kind, l.name.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        if new.is_empty() {
            learned.remove(&node);
        } else {
            learned.insert(node, new);
        }
        keys
    }

    /// What the nodes learned for a profile's accepted content, merged. Only nodes the
    /// profile targets count: a node reports in its own object whatever it likes (it may be
    /// hostile), and one that does not run the profile has nothing to teach it.
    pub fn learning(&self, key: &Key, uid: &str, digest: &str) -> Option<Learning> {
        let targeted: HashSet<String> = {
            let inner = self.inner.lock().expect("lock");
            let selector = inner.wants.get(key).map(|w| w.selector.clone());
            inner
                .nodes
                .iter()
                .filter(|(_, exp)| selector.as_ref().is_some_and(|s| selects(s.as_ref(), &exp.labels)))
                .map(|(node, _)| node.clone())
                .collect()
        };
        let learned = self.learned.lock().expect("lock");
        let reports = learned
            .iter()
            .filter(|(node, _)| targeted.contains(*node))
            .flat_map(|(node, list)| {
                list.iter()
                    .filter(|l| l.kind == key.0 && l.name == key.1 && l.uid == uid)
                    .map(move |l| (node.as_str(), l))
            });
        palisade_domain::learn::merge(digest, reports)
    }

    fn apply_reports(&self, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        match event {
            watcher::Event::Init => {
                *self.relist.lock().expect("lock") = Some(HashMap::new());
                vec![]
            }
            watcher::Event::InitApply(nps) => {
                if let Some(relist) = self.relist.lock().expect("lock").as_mut()
                    && let Some(report) = Report::of(&nps)
                {
                    relist.insert(nps.name_any(), report);
                }
                vec![]
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.lock().expect("lock").take().unwrap_or_default();
                let mut inner = self.inner.lock().expect("lock");
                // A relist is rare (start-up, a broken watch): every profile is looked at again.
                let mut keys: Vec<Key> = inner.wants.keys().cloned().collect();
                for report in inner.reports.values().chain(fresh.values()) {
                    keys.extend(report.exceptions.keys().cloned());
                }
                keys.extend(inner.waiters.drain().flat_map(|(_, w)| w));
                inner.reports = fresh;
                keys.sort();
                keys.dedup();
                self.synced.store(true, std::sync::atomic::Ordering::Release);
                self.ready.notify_waiters();
                keys
            }
            watcher::Event::Apply(nps) => {
                let node = nps.name_any();
                let Some(new) = Report::of(&nps) else {
                    return self.forget_report(&node);
                };
                let mut inner = self.inner.lock().expect("lock");
                let old = inner.reports.get(&node).cloned().unwrap_or_default();
                if old == new && inner.reports.contains_key(&node) {
                    return vec![];
                }
                let mut keys = changed(&old, &new);
                if old.supported != new.supported && inner.reports.contains_key(&node) {
                    // The node gained or lost a kind: every profile of it may count differently.
                    // (A first report wakes the profiles waiting on the node instead.)
                    for (k, kind) in [(0, ProfileKind::AppArmorProfile), (1, ProfileKind::SeccompProfile)] {
                        if old.supported[k] != new.supported[k] {
                            keys.extend(inner.wants.keys().filter(|key| key.0 == kind).cloned());
                        }
                    }
                }
                inner.reports.insert(node.clone(), new);
                keys.extend(inner.wake_settled(&node));
                keys
            }
            watcher::Event::Delete(nps) => self.forget_report(&nps.name_any()),
        }
    }

    /// The node's report is gone (or has no status yet): every profile that may have
    /// counted as installed or listed there is looked at again.
    fn forget_report(&self, node: &str) -> Vec<Key> {
        let mut inner = self.inner.lock().expect("lock");
        let Some(old) = inner.reports.remove(node) else {
            return inner.wake(node);
        };
        let mut keys = changed(&old, &Report::default());
        if let Some(exp) = inner.nodes.get(node) {
            keys.extend(
                inner
                    .wants
                    .iter()
                    .filter(|(_, w)| selects(w.selector.as_ref(), &exp.labels))
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.extend(inner.wake(node));
        dedup(keys)
    }

    /// Records what nodes must hold of a profile (`None`: nothing, e.g. deleted, disabled or
    /// never accepted). Returns the profiles waiting on nodes whose expected set changed.
    pub fn set_want(&self, key: Key, want: Option<Want>) -> Vec<Key> {
        let mut inner = self.inner.lock().expect("lock");
        let old = match &want {
            Some(w) => inner.wants.insert(key.clone(), w.clone()),
            None => inner.wants.remove(&key),
        };
        if old == want {
            return vec![];
        }
        let s = slot(key.0);
        let mut touched = Vec::new();
        for (node, exp) in inner.nodes.iter_mut() {
            let before = exp.sets[s];
            if let Some(o) = &old
                && selects(o.selector.as_ref(), &exp.labels)
            {
                exp.sets[s].remove(o.key);
            }
            if let Some(n) = &want
                && selects(n.selector.as_ref(), &exp.labels)
            {
                exp.sets[s].add(n.key);
            }
            if exp.sets[s] != before {
                touched.push(node.clone());
            }
        }
        dedup(touched.iter().flat_map(|n| inner.wake_settled(n)).collect())
    }

    /// Drops the wants of `kind` not named (after a relist, which may hide deletions).
    pub fn retain_wants(&self, kind: ProfileKind, names: &HashSet<String>) -> Vec<Key> {
        let gone: Vec<Key> = {
            let inner = self.inner.lock().expect("lock");
            inner
                .wants
                .keys()
                .filter(|(k, n)| *k == kind && !names.contains(n))
                .cloned()
                .collect()
        };
        gone.into_iter().flat_map(|k| self.set_want(k, None)).collect()
    }

    /// Sets every node's labels (the current Node list). Returns the profiles waiting on
    /// nodes that joined, left or changed labels.
    pub fn set_nodes(&self, nodes: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Key> {
        let mut inner = self.inner.lock().expect("lock");
        let mut touched: Vec<String> = inner
            .nodes
            .keys()
            .filter(|n| !nodes.contains_key(*n))
            .cloned()
            .collect();
        for n in &touched {
            inner.nodes.remove(n);
        }
        for (name, labels) in nodes {
            if inner.nodes.get(name).is_some_and(|e| &e.labels == labels) {
                continue;
            }
            let sets = [
                inner.expected_set(labels, ProfileKind::AppArmorProfile),
                inner.expected_set(labels, ProfileKind::SeccompProfile),
            ];
            inner.nodes.insert(
                name.clone(),
                Expected {
                    labels: labels.clone(),
                    sets,
                },
            );
            touched.push(name.clone());
        }
        dedup(touched.iter().flat_map(|n| inner.wake(n)).collect())
    }

    /// Where profile `key`, as the caller sees it now (`now`), stands on each node named
    /// (with its labels). A node that cannot tell yet (no report, or sets that disagree)
    /// gets the profile as a waiter, so its next report or expectation change reconciles
    /// the profile again.
    pub fn on_nodes<'a>(
        &self,
        key: &Key,
        now: Option<&Want>,
        nodes: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> HashMap<&'a str, OnNode> {
        let mut inner = self.inner.lock().expect("lock");
        let mut out = HashMap::new();
        let mut waits = Vec::new();
        for (node, labels) in nodes {
            let on = inner.on_node(node, labels, key, now);
            // A profile nodes hold nothing of (disabled, never accepted) waits on no node.
            let targeted = now.is_some_and(|w| selects(w.selector.as_ref(), labels));
            if targeted && matches!(on, OnNode::NoReport | OnNode::Unverified) {
                waits.push(node);
            }
            out.insert(node, on);
        }
        for node in waits {
            inner.waiters.entry(node.to_string()).or_default().insert(key.clone());
        }
        out
    }

    /// The rule classes the node's kernel leaves out of a profile's content (its uid, its
    /// digest), as the node reports; empty when it reports none.
    pub fn not_enforced(&self, node: &str, key: &Key, uid: &str, digest: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("lock");
        inner
            .reports
            .get(node)
            .and_then(|r| r.partial.get(key))
            .filter(|(u, d, _)| u == uid && d == digest)
            .map(|(_, _, rules)| rules.clone())
            .unwrap_or_default()
    }

    /// Resolves once the first full list has been applied.
    pub async fn wait_ready(&self) {
        while !self.synced.load(std::sync::atomic::Ordering::Acquire) {
            let notified = self.ready.notified();
            if self.synced.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            notified.await;
        }
    }

    /// (nodes reported, exceptions held, waiters) — for tests and the memory benchmark.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let inner = self.inner.lock().expect("lock");
        (
            inner.reports.len(),
            inner.reports.values().map(|r| r.exceptions.len()).sum(),
            inner.waiters.values().map(HashSet::len).sum(),
        )
    }
}

/// Profiles whose exception, or whose rules left out, differ between two reports of one node.
fn changed(old: &Report, new: &Report) -> Vec<Key> {
    fn differ<V: PartialEq>(old: &BTreeMap<Key, V>, new: &BTreeMap<Key, V>) -> impl Iterator<Item = Key> {
        let gone_or_changed = old.iter().filter(|(k, v)| new.get(*k) != Some(*v)).map(|(k, _)| k);
        let added = new.keys().filter(|k| !old.contains_key(*k));
        gone_or_changed.chain(added).cloned().collect::<Vec<_>>().into_iter()
    }
    let mut keys: Vec<Key> = differ(&old.exceptions, &new.exceptions).collect();
    keys.extend(differ(&old.partial, &new.partial));
    dedup(keys)
}

pub mod trigger {
    //! The reports' trigger, beside the index it feeds (see [`crate::triggers`]).
    //!
    //! Node reports → the profiles whose standing on that node changed: those whose exception
    //! changed, and those waiting on the node once its installed set agrees with what it is
    //! expected to hold ([`NodeReports::apply`]). The learning-pods publisher also follows the
    //! reports (what each already lists).

    use std::sync::Arc;

    use futures::{Stream, StreamExt};
    use kube::runtime::watcher;
    use palisade_domain::NodeProfileStatus;

    use super::{Key, NodeReports};
    use crate::learning_pods::Published;
    use crate::triggers::Router;

    /// Applies one report event; returns the profiles to look at again.
    pub fn changed(reports: &NodeReports, published: &Published, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        published.observe(&event);
        reports.apply(event)
    }

    /// Follows the reports' watch until it ends.
    pub async fn follow(
        events: impl Stream<Item = Result<watcher::Event<NodeProfileStatus>, watcher::Error>>,
        reports: Arc<NodeReports>,
        published: Arc<Published>,
        router: Router,
    ) {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            // Errors are retried with backoff by the watcher; there is nothing to route.
            if let Ok(event) = event {
                router.route(changed(&reports, &published, event));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use std::collections::BTreeMap;

        use palisade_domain::ProfileKind;
        use serde_json::json;

        use super::*;

        fn report(exceptions: serde_json::Value) -> NodeProfileStatus {
            serde_json::from_value(
                json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
                "metadata": {"name": "n1"}, "spec": {},
                "status": {"capabilities": {"apparmor": true, "seccomp": true}, "exceptions": exceptions}}),
            )
            .unwrap()
        }

        #[test]
        fn a_report_routes_only_the_profiles_whose_entries_changed() {
            let reports = NodeReports::default();
            reports.set_nodes(&BTreeMap::from([("n1".to_string(), BTreeMap::new())]));
            let published = Published::default();
            assert!(changed(&reports, &published, watcher::Event::InitDone).is_empty());
            let failing = json!([{"kind": "SeccompProfile", "name": "web", "uid": "u", "generation": 1,
                "digest": "0000000000000abc0000", "state": "Error", "message": "disk full"}]);
            let web = (ProfileKind::SeccompProfile, "web".to_string());
            assert_eq!(
                changed(&reports, &published, watcher::Event::Apply(report(failing.clone()))),
                vec![web.clone()]
            );
            assert!(
                changed(&reports, &published, watcher::Event::Apply(report(failing))).is_empty(),
                "the same report again (an agent's heartbeat write) routes nothing"
            );
            assert_eq!(
                changed(&reports, &published, watcher::Event::Apply(report(json!([])))),
                vec![web],
                "the failure is gone"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_domain::{InstalledSet, installed_key};
    use serde_json::json;

    use super::*;

    const SC: ProfileKind = ProfileKind::SeccompProfile;

    fn key(name: &str) -> Key {
        (SC, name.into())
    }

    fn want(uid: &str, digest: &str) -> Want {
        Want::of(SC, uid, true, Some(digest), None).unwrap()
    }

    /// A report holding `installed` (uid, digest) pairs and listing `exceptions`.
    fn nps(node: &str, installed: &[(&str, &str)], exceptions: serde_json::Value) -> NodeProfileStatus {
        let mut set = InstalledSet::default();
        for (uid, digest) in installed {
            set.add(installed_key(SC, uid, digest));
        }
        serde_json::from_value(
            json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
            "metadata": {"name": node}, "spec": {},
            "status": {"capabilities": {"apparmor": false, "seccomp": true},
                "installed": {"seccomp": set.summary()}, "exceptions": exceptions}}),
        )
        .unwrap()
    }

    /// A report with only what the node learned for `learn-me` (digest `d1`): `rules`.
    fn learned(node: &str, rules: &[(&str, u64)]) -> NodeProfileStatus {
        let mut nps = nps(node, &[], json!([]));
        let rules: Vec<serde_json::Value> = rules
            .iter()
            .map(|(r, n)| json!({"rule": r, "count": n, "firstSeen": "2026-11-23T01:00:00Z", "lastSeen": "2026-11-23T02:00:00Z"}))
            .collect();
        nps.status.as_mut().unwrap().learned = serde_json::from_value(json!([
            {"kind": "SeccompProfile", "name": "learn-me", "uid": "u", "digest": "d1", "rules": rules}
        ]))
        .unwrap();
        nps
    }

    #[test]
    fn rules_a_kernel_leaves_out_are_kept_per_content_and_wake_their_profile() {
        let (r, _) = cluster(&["n1"]);
        r.set_want(key("a"), Some(want("a", "da")));
        r.apply(watcher::Event::InitDone);
        let partial = |rules: serde_json::Value| {
            let mut report = nps("n1", &[("a", "da")], json!([]));
            report.status.as_mut().unwrap().partial = serde_json::from_value(json!([
                {"kind": "SeccompProfile", "name": "a", "uid": "a", "digest": "da", "state": "Installed",
                 "notEnforced": rules}
            ]))
            .unwrap();
            report
        };
        r.apply(watcher::Event::Apply(nps("n1", &[("a", "da")], json!([]))));
        assert!(r.not_enforced("n1", &key("a"), "a", "da").is_empty());
        assert_eq!(
            r.apply(watcher::Event::Apply(partial(json!(["userns"])))),
            vec![key("a")],
            "the profile is looked at again"
        );
        assert_eq!(r.not_enforced("n1", &key("a"), "a", "da"), vec!["userns".to_string()]);
        assert!(
            r.not_enforced("n1", &key("a"), "a", "other").is_empty(),
            "another content"
        );
        assert!(
            r.not_enforced("n1", &key("a"), "other-uid", "da").is_empty(),
            "another object"
        );
        assert!(r.not_enforced("n2", &key("a"), "a", "da").is_empty(), "another node");
        assert!(r.apply(watcher::Event::Apply(partial(json!(["userns"])))).is_empty());
        // A hostile node's words that are not class words are not repeated anywhere.
        r.apply(watcher::Event::Apply(partial(json!([
            "x); node-b (userns",
            "userns",
            "\u{1b}[2J"
        ]))));
        assert_eq!(r.not_enforced("n1", &key("a"), "a", "da"), vec!["userns".to_string()]);
        assert_eq!(
            r.apply(watcher::Event::Apply(nps("n1", &[("a", "da")], json!([])))),
            vec![key("a")],
            "a new kernel that mediates everything"
        );
        assert!(r.not_enforced("n1", &key("a"), "a", "da").is_empty());
    }

    #[test]
    fn what_nodes_learned_is_merged_and_wakes_only_its_profile() {
        let (r, _) = cluster(&["a", "b"]);
        r.set_want(key("learn-me"), Some(want("u", "d1")));
        r.apply(watcher::Event::InitDone);
        assert_eq!(
            r.apply(watcher::Event::Apply(learned("a", &[("read", 3)]))),
            vec![key("learn-me")]
        );
        assert_eq!(
            r.apply(watcher::Event::Apply(learned("b", &[("read", 2), ("bind", 1)]))),
            vec![key("learn-me")]
        );
        // The same report again wakes nothing.
        assert!(
            r.apply(watcher::Event::Apply(learned("b", &[("read", 2), ("bind", 1)])))
                .is_empty()
        );
        let l = r.learning(&key("learn-me"), "u", "d1").unwrap();
        assert_eq!((l.nodes, l.new_permissions), (2, 2));
        let read = l.suggestions.iter().find(|s| s.rule == "read").unwrap();
        assert_eq!((read.count, read.node_count), (5, 2));
        // Another uid (a recreated profile) or digest (new content) has learned nothing.
        assert!(r.learning(&key("learn-me"), "u2", "d1").is_none());
        assert!(r.learning(&key("learn-me"), "u", "d2").is_none());
        // A node's report going takes its part away.
        assert_eq!(
            r.apply(watcher::Event::Delete(learned("a", &[]))),
            vec![key("learn-me")]
        );
        assert_eq!(r.learning(&key("learn-me"), "u", "d1").unwrap().nodes, 1);
        // A relist without b's report (deleted while the watch was down) drops b's part.
        r.apply(watcher::Event::Init);
        r.apply(watcher::Event::InitApply(learned("a", &[("read", 1)])));
        assert_eq!(r.apply(watcher::Event::InitDone), vec![key("learn-me")]);
        let l = r.learning(&key("learn-me"), "u", "d1").unwrap();
        assert_eq!((l.nodes, l.new_permissions), (1, 1));
    }

    /// A node reports what it likes in its own object (it may be hostile): what a node the
    /// profile does not target reports, and any rule outside learning's grammar, is left out.
    #[test]
    fn learning_counts_only_targeted_nodes_and_learnable_rules() {
        let (r, _) = cluster(&["a", "b"]);
        let only_a = Want::of(
            SC,
            "u",
            true,
            Some("d1"),
            Some(&serde_json::from_value(json!({"matchLabels": {"node": "a"}})).unwrap()),
        )
        .unwrap();
        r.set_want(key("learn-me"), Some(only_a));
        r.apply(watcher::Event::InitDone);
        r.apply(watcher::Event::Apply(learned(
            "a",
            &[("read", 1), ("read; rm -rf /", 1)],
        )));
        r.apply(watcher::Event::Apply(learned("b", &[("ptrace", 9)])));
        let l = r.learning(&key("learn-me"), "u", "d1").unwrap();
        let rules: Vec<&str> = l.suggestions.iter().map(|s| s.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["read"],
            "b is not targeted; the second rule is not a syscall name"
        );
        assert_eq!(l.nodes, 1);
        // Without the profile's want (not accepted, deleted), no node counts.
        r.set_want(key("learn-me"), None);
        assert!(r.learning(&key("learn-me"), "u", "d1").is_none());
    }

    fn exception(name: &str, state: &str, message: &str) -> serde_json::Value {
        json!({"kind": "SeccompProfile", "name": name, "uid": "u", "generation": 1,
            "digest": "0000000000000abc0000", "state": state, "message": message})
    }

    fn cluster(nodes: &[&str]) -> (NodeReports, BTreeMap<String, BTreeMap<String, String>>) {
        let r = NodeReports::default();
        let labels: BTreeMap<String, BTreeMap<String, String>> = nodes
            .iter()
            .map(|n| (n.to_string(), BTreeMap::from([("node".to_string(), n.to_string())])))
            .collect();
        r.set_nodes(&labels);
        (r, labels)
    }

    fn on(
        r: &NodeReports,
        labels: &BTreeMap<String, BTreeMap<String, String>>,
        name: &str,
        now: Option<&Want>,
    ) -> BTreeMap<String, OnNode> {
        r.on_nodes(&key(name), now, labels.iter().map(|(n, l)| (n.as_str(), l)))
            .into_iter()
            .map(|(n, o)| (n.to_string(), o))
            .collect()
    }

    #[test]
    fn a_profile_not_listed_is_installed_only_where_the_installed_set_vouches_for_it() {
        let (r, labels) = cluster(&["n1", "n2", "n3"]);
        for (name, digest) in [("a", "da"), ("b", "db")] {
            r.set_want(key(name), Some(want(name, digest)));
        }
        // n1 holds both; n2 holds a and lists b as failing; n3 still holds b's old content.
        r.apply(watcher::Event::Apply(nps("n1", &[("a", "da"), ("b", "db")], json!([]))));
        r.apply(watcher::Event::Apply(nps(
            "n2",
            &[("a", "da")],
            json!([exception("b", "Error", "parser said no")]),
        )));
        r.apply(watcher::Event::Apply(nps(
            "n3",
            &[("a", "da"), ("b", "old")],
            json!([]),
        )));
        let a = on(&r, &labels, "a", Some(&want("a", "da")));
        assert_eq!(a["n1"], OnNode::Installed);
        assert_eq!(a["n2"], OnNode::Installed, "b's exception does not hide a");
        assert_eq!(
            a["n3"],
            OnNode::Unverified,
            "n3's set disagrees: nothing can be said of a either"
        );
        let b = on(&r, &labels, "b", Some(&want("b", "db")));
        assert!(matches!(&b["n2"], OnNode::Entry(e) if e.message == "parser said no"));
        assert_eq!(b["n3"], OnNode::Unverified);

        // Another report from n3 that still disagrees (a new exception elsewhere) wakes none
        // of the profiles waiting on it: they would only be judged pending again.
        let woken = r.apply(watcher::Event::Apply(nps(
            "n3",
            &[("a", "da"), ("b", "old")],
            json!([exception("c", "Pending", "")]),
        )));
        assert_eq!(woken, vec![key("c")], "only the changed entry is routed");
        // n3's agent installs b's accepted content: its report wakes what waited on it.
        let mut woken = r.apply(watcher::Event::Apply(nps("n3", &[("a", "da"), ("b", "db")], json!([]))));
        woken.sort();
        assert_eq!(woken, vec![key("a"), key("b"), key("c")], "c: its entry went");
        assert_eq!(on(&r, &labels, "b", Some(&want("b", "db")))["n3"], OnNode::Installed);
    }

    #[test]
    fn the_callers_view_of_the_profile_counts_not_the_indexed_one() {
        let (r, labels) = cluster(&["n1"]);
        r.set_want(key("a"), Some(want("a", "v1")));
        r.apply(watcher::Event::Apply(nps("n1", &[("a", "v1")], json!([]))));
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "v1")))["n1"], OnNode::Installed);
        // The operator just accepted v2; its own watch has not caught up: the node still
        // holds v1, which must not count as v2.
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "v2")))["n1"], OnNode::Unverified);
        assert_eq!(
            on(
                &r,
                &labels,
                "a",
                Some(&Want::of(SC, "other-uid", true, Some("v1"), None).unwrap())
            )["n1"],
            OnNode::Unverified,
            "a recreated object is another profile"
        );
        assert_eq!(on(&r, &labels, "a", None)["n1"], OnNode::Unverified, "nothing accepted");
    }

    #[test]
    fn expectation_changes_wake_waiters_and_selectors_pick_nodes() {
        let (r, labels) = cluster(&["n1", "n2"]);
        let only_n1: LabelSelector = serde_json::from_value(json!({"matchLabels": {"node": "n1"}})).unwrap();
        let b = Want::of(SC, "b", true, Some("db"), Some(&only_n1)).unwrap();
        r.set_want(key("a"), Some(want("a", "da")));
        r.set_want(key("b"), Some(b.clone()));
        // n2 is not selected by b, so its set holds only a.
        r.apply(watcher::Event::Apply(nps("n2", &[("a", "da")], json!([]))));
        // The agent is ahead: it already holds a's next content; the operator's watch lags.
        r.apply(watcher::Event::Apply(nps(
            "n1",
            &[("a", "da2"), ("b", "db")],
            json!([]),
        )));
        assert_eq!(on(&r, &labels, "b", Some(&b))["n1"], OnNode::Unverified);
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "da")))["n2"], OnNode::Installed);
        // The operator's watch catches up: a and b, waiting on n1, are woken; b now counts.
        let woken = r.set_want(key("a"), Some(want("a", "da2")));
        assert_eq!(woken, vec![key("a"), key("b")]);
        assert_eq!(on(&r, &labels, "b", Some(&b))["n1"], OnNode::Installed);
        assert_eq!(
            on(&r, &labels, "a", Some(&want("a", "da2")))["n2"],
            OnNode::Unverified,
            "n2 has not caught up"
        );
    }

    #[test]
    fn unsupported_kinds_missing_reports_and_relists() {
        let (r, labels) = cluster(&["n1", "n2"]);
        r.set_want((ProfileKind::AppArmorProfile, "x".into()), None);
        r.apply(watcher::Event::Apply(nps("n1", &[], json!([]))));
        let x = r.on_nodes(
            &(ProfileKind::AppArmorProfile, "x".into()),
            Want::of(ProfileKind::AppArmorProfile, "x", true, Some("d"), None).as_ref(),
            labels.iter().map(|(n, l)| (n.as_str(), l)),
        );
        assert_eq!(x["n1"], OnNode::Unsupported, "n1 reports no AppArmor");
        assert_eq!(x["n2"], OnNode::NoReport);
        // n2's first report wakes x, which waited on it.
        let woken = r.apply(watcher::Event::Apply(nps("n2", &[], json!([]))));
        assert_eq!(woken, vec![(ProfileKind::AppArmorProfile, "x".into())]);

        // Exceptions that change route their profile; the same report again routes nothing.
        let report = nps("n1", &[], json!([exception("e", "Error", "m1")]));
        assert_eq!(r.apply(watcher::Event::Apply(report.clone())), vec![key("e")]);
        assert!(r.apply(watcher::Event::Apply(report)).is_empty());
        let keys = r.apply(watcher::Event::Apply(nps(
            "n1",
            &[],
            json!([exception("e", "Error", "m2")]),
        )));
        assert_eq!(keys, vec![key("e")], "a new message is a change");

        // A relist drops nodes that vanished meanwhile.
        r.apply(watcher::Event::Init);
        r.apply(watcher::Event::InitApply(nps("n2", &[], json!([]))));
        let keys = r.apply(watcher::Event::InitDone);
        assert!(keys.contains(&key("e")));
        assert_eq!(r.sizes().0, 1);
        assert_eq!(on(&r, &labels, "e", Some(&want("e", "d")))["n1"], OnNode::NoReport);
    }

    #[test]
    fn what_cannot_vouch_counts_as_nothing_and_going_away_recounts() {
        let (r, labels) = cluster(&["n1"]);
        r.set_want(key("a"), Some(want("a", "da")));
        // The agent created its object but has not reported: not "unsupported", pending.
        let empty: NodeProfileStatus = serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha2",
            "kind": "NodeProfileStatus", "metadata": {"name": "n1"}, "spec": {}}))
        .unwrap();
        r.apply(watcher::Event::Apply(empty));
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "da")))["n1"], OnNode::NoReport);

        // A profile nodes hold nothing of (disabled, never accepted) waits on no node.
        let waiting = r.sizes().2;
        on(&r, &labels, "off", None);
        assert_eq!(r.sizes().2, waiting);

        r.apply(watcher::Event::Apply(nps("n1", &[("a", "da")], json!([]))));
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "da")))["n1"], OnNode::Installed);
        // A label the index has not seen yet: nothing can be vouched for.
        let mut relabelled = labels.clone();
        relabelled.get_mut("n1").unwrap().insert("new".into(), "label".into());
        assert_eq!(
            on(&r, &relabelled, "a", Some(&want("a", "da")))["n1"],
            OnNode::Unverified
        );

        // The report goes: what counted as installed there is looked at again.
        let keys = r.apply(watcher::Event::Delete(nps("n1", &[], json!([]))));
        assert!(keys.contains(&key("a")), "{keys:?}");
        assert_eq!(on(&r, &labels, "a", Some(&want("a", "da")))["n1"], OnNode::NoReport);
    }

    /// The operator's incremental index and the batch judgement (`palisade status`) say the
    /// same of every profile on every node, after any sequence of profile changes, label
    /// changes, reports and reports going away.
    mod agrees_with_the_batch_judgement {
        use palisade_domain::nodestatus::{Expectation, judge};
        use proptest::prelude::*;

        use super::*;

        const NODES: [&str; 3] = ["n1", "n2", "n3"];
        const PROFILES: [(ProfileKind, &str); 3] = [
            (ProfileKind::AppArmorProfile, "a"),
            (ProfileKind::SeccompProfile, "a"),
            (ProfileKind::SeccompProfile, "b"),
        ];
        const DIGESTS: [&str; 2] = ["d1", "d2"];

        #[derive(Clone, Debug)]
        enum Op {
            /// Profile i: nothing to hold, or content DIGESTS[d] for nodes of a tier (or all).
            Want(usize, Option<(usize, Option<bool>)>),
            /// Node i's labels: tier=front or tier=back.
            Labels(usize, bool),
            /// Node i reports: per profile installed at a digest, listed, or absent; per
            /// kind, supported.
            Report(usize, [Option<Result<usize, ()>>; 3], [bool; 2]),
            /// Node i's report goes.
            Gone(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (
                    0..3usize,
                    proptest::option::of((0..2usize, proptest::option::of(any::<bool>())))
                )
                    .prop_map(|(i, w)| Op::Want(i, w)),
                (0..3usize, any::<bool>()).prop_map(|(i, t)| Op::Labels(i, t)),
                (
                    0..3usize,
                    proptest::array::uniform3(proptest::option::of(prop_oneof![
                        (0..2usize).prop_map(Ok),
                        Just(Err(()))
                    ])),
                    proptest::array::uniform2(any::<bool>()),
                )
                    .prop_map(|(i, p, s)| Op::Report(i, p, s)),
                (0..3usize).prop_map(Op::Gone),
            ]
        }

        fn tier(front: bool) -> BTreeMap<String, String> {
            BTreeMap::from([("tier".to_string(), if front { "front" } else { "back" }.to_string())])
        }

        fn selector(front: Option<bool>) -> Option<LabelSelector> {
            front.map(|f| serde_json::from_value(json!({"matchLabels": tier(f)})).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn on_every_node(ops in proptest::collection::vec(op(), 1..40)) {
                let r = NodeReports::default();
                let mut labels: BTreeMap<String, BTreeMap<String, String>> =
                    NODES.iter().map(|n| (n.to_string(), tier(true))).collect();
                r.set_nodes(&labels);
                r.apply(watcher::Event::InitDone);
                let mut wants: [Option<(usize, Option<bool>)>; 3] = [None; 3];
                let mut reports: BTreeMap<String, NodeProfileStatus> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Want(i, w) => {
                            wants[i] = w;
                            let (kind, name) = PROFILES[i];
                            let sel = w.and_then(|(_, t)| selector(t));
                            let want = w.and_then(|(d, _)| Want::of(kind, name, true, Some(DIGESTS[d]), sel.as_ref()));
                            r.set_want((kind, name.to_string()), want);
                        }
                        Op::Labels(i, front) => {
                            labels.insert(NODES[i].to_string(), tier(front));
                            r.set_nodes(&labels);
                        }
                        Op::Report(i, held, supported) => {
                            let mut sets = [InstalledSet::default(), InstalledSet::default()];
                            let mut exceptions = vec![];
                            for (j, h) in held.iter().enumerate() {
                                let (kind, name) = PROFILES[j];
                                match h {
                                    Some(Ok(d)) => sets[usize::from(kind == SC)].add(installed_key(kind, name, DIGESTS[*d])),
                                    Some(Err(())) => exceptions.push(json!({"kind": kind, "name": name, "uid": name,
                                        "generation": 1, "digest": "00", "state": "Error", "message": "no"})),
                                    None => {}
                                }
                            }
                            let nps: NodeProfileStatus = serde_json::from_value(json!({
                                "apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
                                "metadata": {"name": NODES[i]}, "spec": {},
                                "status": {"capabilities": {"apparmor": supported[0], "seccomp": supported[1]},
                                    "installed": {"apparmor": sets[0].summary(), "seccomp": sets[1].summary()},
                                    "exceptions": exceptions}})).unwrap();
                            r.apply(watcher::Event::Apply(nps.clone()));
                            reports.insert(NODES[i].to_string(), nps);
                        }
                        Op::Gone(i) => {
                            if let Some(nps) = reports.remove(NODES[i]) {
                                r.apply(watcher::Event::Delete(nps));
                            }
                        }
                    }
                }
                let selectors: Vec<Option<LabelSelector>> = wants.iter().map(|w| w.and_then(|(_, t)| selector(t))).collect();
                let expected: Vec<Expectation<'_>> = PROFILES
                    .iter()
                    .zip(&wants)
                    .zip(&selectors)
                    .map(|(((kind, name), w), sel)| Expectation {
                        kind: *kind,
                        name,
                        uid: name,
                        accepted: w.map(|(d, _)| DIGESTS[d]),
                        enabled: true,
                        selector: sel.as_ref(),
                    })
                    .collect();
                for (node, nps) in &reports {
                    let batch = judge(nps.status.as_ref().unwrap(), &labels[node], &expected);
                    for (kind, name, standing) in batch {
                        let i = PROFILES.iter().position(|p| *p == (kind, name.as_str())).unwrap();
                        let now = wants[i].and_then(|(d, _)| Want::of(kind, &name, true, Some(DIGESTS[d]), selectors[i].as_ref()));
                        let on = r.on_nodes(&(kind, name.clone()), now.as_ref(), [(node.as_str(), &labels[node])]);
                        let agree = matches!(
                            (&on[node.as_str()], &standing),
                            (OnNode::Installed, Standing::Installed)
                                | (OnNode::Unsupported, Standing::Unsupported)
                                | (OnNode::Unverified, Standing::Unverified)
                                | (OnNode::Entry(_), Standing::Listed(_))
                        );
                        prop_assert!(agree, "{kind:?} {name} on {node}: operator {:?}, batch {standing:?}", on[node.as_str()]);
                    }
                }
            }
        }
    }
}
