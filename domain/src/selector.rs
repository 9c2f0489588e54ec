//! The `nodeSelector` of both profile kinds: Kubernetes label selectors, matched by
//! kube-core's selector types, with a schema that refuses unknown operators at admission.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// The selector as kube-core reads it; an unset selector selects every node. An error
/// (an operator Kubernetes does not know, `In` without values) names the field.
pub fn node_selector(selector: Option<&LabelSelector>) -> Result<Selector, String> {
    match selector {
        None => Ok(Selector::default()),
        Some(s) => Selector::try_from(s.clone()).map_err(|e| format!("spec.nodeSelector: {}", e.0)),
    }
}

/// Whether `labels` satisfy `selector`, as Kubernetes defines it. An invalid selector
/// selects nothing here; the operator reports it on the profile (admission refuses it first).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    node_selector(selector).is_ok_and(|s| s.matches(labels))
}

/// The OpenAPI schema of `nodeSelector`: a LabelSelector whose operators are an enum, whose
/// values are required exactly where Kubernetes requires them, with sizes bounded.
pub fn node_selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    label_selector_schema(
        generator,
        "Which nodes get the profile; every node when unset or empty (a Kubernetes label selector).",
        "node",
    )
}

/// The OpenAPI schema of a LabelSelector over `what` (node, pod) with operators as an enum,
/// values required exactly where Kubernetes requires them, and sizes bounded.
pub fn label_selector_schema(_: &mut schemars::SchemaGenerator, description: &str, what: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "type": "object",
        "properties": {
            "matchLabels": {
                "description": format!("Labels a {what} must have, each with this value."),
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 63},
                "maxProperties": 64
            },
            "matchExpressions": {
                "description": format!("Label requirements a {what} must meet, all of them."),
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"description": "The label key.", "type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {
                            "description": "In, NotIn (with values), Exists or DoesNotExist (without).",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "description": "The label values In or NotIn compare with.",
                            "type": "array",
                            "maxItems": 256,
                            "items": {"type": "string", "maxLength": 63}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "In and NotIn need at least one value; Exists and DoesNotExist take none"
                    }]
                }
            }
        }
    })
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
    }

    #[test]
    fn an_invalid_selector_is_an_error_naming_the_field() {
        let bogus = sel(json!({"matchExpressions": [{"key": "role", "operator": "Bogus"}]}));
        let err = node_selector(Some(&bogus)).unwrap_err();
        assert!(err.starts_with("spec.nodeSelector: "), "{err}");
        assert!(!selects(Some(&bogus), &labels(&[("role", "web")])));
        let no_values = sel(json!({"matchExpressions": [{"key": "role", "operator": "In"}]}));
        assert!(node_selector(Some(&no_values)).is_err());
    }
}
