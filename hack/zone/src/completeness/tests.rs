use std::collections::BTreeSet;

use serde_json::json;

use super::*;

#[test]
fn every_rule_lists_exactly_the_properties_the_spec_declares() {
    let spec = exo_openapi::Spec::embedded();
    for (schema, rule) in RULES {
        let declared = spec.schema_properties(schema).unwrap_or_else(|| panic!("{schema} is not in the spec"));
        let listed: Vec<&str> = rule.iter().map(|(name, _)| *name).collect();
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(unique.len(), listed.len(), "{schema} lists a property twice");
        assert_eq!(
            unique.into_iter().collect::<Vec<_>>(),
            declared.iter().map(String::as_str).collect::<Vec<_>>(),
            "{schema}"
        );
    }
}

#[test]
fn nested_and_answered_schemas_have_rules_and_operations_exist() {
    let operations: BTreeSet<String> =
        exo_openapi::Spec::embedded().operations().into_iter().map(|(_, _, id)| id).collect();
    for (schema, property, item) in NESTED {
        assert!(rule(item).is_some() && rule(schema).is_some_and(|r| r.iter().any(|(p, _)| p == property)));
    }
    for (operation, _, schema) in ANSWERS {
        assert!(operations.contains(*operation), "{operation} is not in the spec");
        assert!(rule(schema).is_some(), "{schema} has no rule");
    }
}

#[test]
fn fill_adds_absent_defaults_down_nested_lists_and_keeps_values() {
    let mut cluster = json!({"id": "c", "enable-kube-proxy": false, "nodepools": [{"id": "n"}]});
    fill("sks-cluster", &mut cluster);
    assert_eq!(cluster["auto-upgrade"], json!(false));
    assert_eq!(cluster["enable-kube-proxy"], json!(false), "a value set is kept");
    assert_eq!(cluster["enable-operators-ca"], json!(false));
    assert_eq!(cluster["nodepools"][0]["public-ip-assignment"], json!("inet4"));
    assert!(cluster.get("description").is_none(), "nothing is added for a property left out while unset");
}

#[test]
fn missing_names_each_absent_property_with_its_path() {
    let answer = json!({"sks-clusters": [{"id": "c", "name": "a", "state": "running", "version": "1.34.2",
        "level": "pro", "endpoint": "https://x", "created-at": "2025-01-01T00:00:00Z", "auto-upgrade": false,
        "enable-kube-proxy": true, "enable-operators-ca": false,
        "nodepools": [{"id": "n", "name": "np", "state": "running", "size": 1, "version": "1.34.2",
            "instance-pool": {"id": "p"}, "instance-type": {"id": "t"}, "disk-size": 20,
            "created-at": "2025-01-01T00:00:00Z", "public-ip-assignment": "inet4"}]}]});
    assert_eq!(missing_in_answer("list-sks-clusters", &answer), ["sks-clusters[0].nodepools[0].template"]);
    let mut complete_answer = answer.clone();
    complete_answer["sks-clusters"][0]["nodepools"][0]["template"] = json!({"id": "t"});
    assert!(missing_in_answer("list-sks-clusters", &complete_answer).is_empty());
    assert_eq!(missing_in_answer("get-sks-cluster", &json!({"id": "c"})).len(), 10);
    assert!(missing_in_answer("list-instances", &json!({})).is_empty(), "not a ruled answer");
    assert_eq!(missing_in_answer("list-instance-types", &json!({})), ["instance-types: absent"]);
}
