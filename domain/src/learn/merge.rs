//! The operator's merge of what every node learned for a profile.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::grammar::is_learnable_rule;
use super::types::{LearnedProfile, Learning, MAX_SUGGESTION_NODES, MAX_SUGGESTIONS, Suggestion};

/// Merges what nodes learned for one profile at one accepted digest; reports of an older
/// content are left out (they were made under other rules).
pub fn merge<'a>(digest: &str, reports: impl IntoIterator<Item = (&'a str, &'a LearnedProfile)>) -> Option<Learning> {
    struct Acc {
        count: u64,
        first: Time,
        last: Time,
        nodes: BTreeSet<String>,
    }
    let mut rules: BTreeMap<String, Acc> = BTreeMap::new();
    let mut nodes = 0u32;
    let mut omitted = 0u32;
    for (node, learned) in reports {
        if learned.digest != digest {
            continue;
        }
        nodes += 1;
        omitted = omitted.max(learned.omitted_rules);
        // A node reports what it likes: only rules of learning's own grammar are suggested.
        for r in learned
            .rules
            .iter()
            .filter(|r| is_learnable_rule(learned.kind, &r.rule))
        {
            let acc = rules.entry(r.rule.clone()).or_insert_with(|| Acc {
                count: 0,
                first: r.first_seen.clone(),
                last: r.last_seen.clone(),
                nodes: BTreeSet::new(),
            });
            acc.count += r.count;
            if r.first_seen.0 < acc.first.0 {
                acc.first = r.first_seen.clone();
            }
            if r.last_seen.0 > acc.last.0 {
                acc.last = r.last_seen.clone();
            }
            acc.nodes.insert(node.to_string());
        }
    }
    if nodes == 0 {
        return None;
    }
    let last_new_at = rules.values().map(|a| a.first.clone()).max_by_key(|t| t.0);
    let new_permissions = rules.len() as u32;
    let omitted_suggestions = rules.len().saturating_sub(MAX_SUGGESTIONS) as u32 + omitted;
    let suggestions = rules
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(rule, a)| Suggestion {
            rule,
            count: a.count,
            first_seen: a.first,
            last_seen: a.last,
            node_count: a.nodes.len() as u32,
            nodes: a.nodes.into_iter().take(MAX_SUGGESTION_NODES).collect(),
        })
        .collect();
    Some(Learning {
        new_permissions,
        last_new_at,
        nodes,
        suggestions,
        omitted_suggestions,
    })
}
