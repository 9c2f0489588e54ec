//! Label selector matching (the `nodeSelector` of both profile kinds).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`, as Kubernetes defines it; an unset or empty
/// selector matches everything. An unknown operator matches nothing (fail closed).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matches_like_kubernetes() {
        let node = labels(&[("zone", "a"), ("role", "web")]);
        assert!(selects(None, &node));
        assert!(selects(Some(&sel(json!({}))), &node));
        assert!(selects(Some(&sel(json!({"matchLabels": {"zone": "a"}}))), &node));
        assert!(!selects(Some(&sel(json!({"matchLabels": {"zone": "b"}}))), &node));
        let expr = |op: &str, values: serde_json::Value| {
            sel(json!({"matchExpressions": [{"key": "role", "operator": op, "values": values}]}))
        };
        assert!(selects(Some(&expr("In", json!(["web", "db"]))), &node));
        assert!(!selects(Some(&expr("In", json!(["db"]))), &node));
        assert!(selects(Some(&expr("NotIn", json!(["db"]))), &node));
        assert!(!selects(Some(&expr("NotIn", json!(["web"]))), &node));
        assert!(selects(Some(&expr("Exists", json!(null))), &node));
        assert!(!selects(Some(&expr("DoesNotExist", json!(null))), &node));
        assert!(
            selects(Some(&expr("NotIn", json!(["web"]))), &labels(&[])),
            "NotIn matches a missing key"
        );
        assert!(
            !selects(Some(&expr("Bogus", json!(null))), &node),
            "unknown operators fail closed"
        );
    }
}
