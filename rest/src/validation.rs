//! k8s.io/apimachinery's validation rules, with its messages: names, label
//! keys and values, annotations, finalizers, and the object metadata checks
//! every create and update runs (`ValidateObjectMeta`,
//! `ValidateObjectMetaUpdate`). Each `*_errors`-style function returns the
//! messages apimachinery's `Is*` function would; the `Cause` builders put
//! them on field paths as `field.Invalid` does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use super::status::Cause;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";

/// Largest total size of an object's annotations (keys and values), in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `validation.RegexError`, including its doubled spaces before " or ".
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", examples.join(" or "))
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_label_text(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge) && b.last().is_some_and(edge) && b.iter().all(|c| edge(c) || *c == b'-')
}

/// `validation.IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !s.split('.').all(is_dns1123_label_text) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// `validation.IsDNS1123Label`.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !is_dns1123_label_text(s) {
        // A valid subdomain that is not a label (the length is checked above): dots.
        if s.split('.').all(is_dns1123_label_text) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// `validation.IsDNS1035Label`.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !(is_dns1123_label_text(s) && s.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// How an object's name is checked: `validation.NameIsDNSSubdomain` and its
/// siblings. `prefix` is true for a `generateName`, whose trailing dash is fine.
pub type NameRule = fn(name: &str, prefix: bool) -> Vec<String>;

/// A generateName may end in '-': the generated suffix follows it.
fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    match name.strip_suffix('-') {
        Some(rest) if prefix && !rest.is_empty() => format!("{rest}a"),
        _ => name.to_owned(),
    }
}

/// `NameIsDNSSubdomain`: most kinds.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// `NameIsDNSLabel`: namespaces and kinds whose names become DNS labels.
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    dns1123_label(&mask_trailing_dash(name, prefix))
}

/// `NameIsDNS1035Label`: Services.
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    dns1035_label(&mask_trailing_dash(name, prefix))
}

/// `path.ValidatePathSegmentName`: what any name must be to appear in a URL path
/// (the only rule for kinds such as CSRs, core/v1 Events and APIServices).
pub fn name_is_path_segment(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix {
        match name {
            "." => return vec!["may not be '.'".to_owned()],
            ".." => return vec!["may not be '..'".to_owned()],
            _ => {}
        }
    }
    for c in ['/', '%'] {
        if name.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

/// `validation.IsValidPortNum`.
pub fn port_number(n: i64) -> Vec<String> {
    if (1..=65535).contains(&n) { Vec::new() } else { vec!["must be between 1 and 65535, inclusive".to_owned()] }
}

/// `validation.IsValidPortName`: an IANA service name.
pub fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// `validation.IsQualifiedName`: label keys, annotation keys, finalizers, taint keys.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|e| format!("prefix part {e}")));
            }
            *name
        }
        _ => {
            let expected = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
            return vec![format!(
                "a qualified name {expected} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// `validation.IsValidLabelValue`.
pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

fn invalid_each(field: &str, value: &str, messages: Vec<String>) -> Vec<Cause> {
    messages.into_iter().map(|m| Cause::invalid(field, &json!(value), m)).collect()
}

/// `ValidateLabels`: keys are qualified names, values label values; every
/// error is on `field` itself, as apimachinery reports them.
pub fn labels(labels: &BTreeMap<String, String>, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in labels {
        causes.extend(invalid_each(field, k, qualified_name(k)));
        causes.extend(invalid_each(field, v, label_value(v)));
    }
    causes
}

/// `ValidateAnnotations`: keys are qualified names (in any case), the total at most 256 KiB.
pub fn annotations(annotations: &BTreeMap<String, String>, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for k in annotations.keys() {
        causes.extend(invalid_each(field, k, qualified_name(&k.to_lowercase())));
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        causes.push(Cause::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    causes
}

/// `ValidateFinalizers`.
pub fn finalizers(finalizers: &[String], field: &str) -> Vec<Cause> {
    let mut causes: Vec<Cause> = finalizers.iter().flat_map(|f| invalid_each(field, f, qualified_name(f))).collect();
    let (orphan, delete) = ("orphan", "foregroundDeletion");
    if finalizers.iter().any(|f| f == orphan) && finalizers.iter().any(|f| f == delete) {
        causes.push(Cause::invalid(
            field,
            &json!(finalizers),
            format!("finalizer {orphan} and {delete} cannot be both set"),
        ));
    }
    causes
}

/// `ValidateObjectMeta` of a new object (after name generation): name by
/// `rule`, namespace presence, generation, labels, annotations, finalizers.
pub fn object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
        causes.extend(invalid_each("metadata.generateName", prefix, rule(prefix, true)));
    }
    match meta.name.as_deref().filter(|n| !n.is_empty()) {
        None => causes.push(Cause::required_because("metadata.name", "name or generateName is required")),
        Some(name) => causes.extend(invalid_each("metadata.name", name, rule(name, false))),
    }
    causes.extend(common(meta, namespaced));
    causes
}

fn common(meta: &ObjectMeta, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let namespace = meta.namespace.as_deref().filter(|n| !n.is_empty());
    match (namespaced, namespace) {
        (true, None) => causes.push(Cause::required("metadata.namespace")),
        (true, Some(ns)) => causes.extend(invalid_each("metadata.namespace", ns, name_is_dns_label(ns, false))),
        (false, Some(_)) => causes.push(Cause::forbidden("metadata.namespace", "not allowed on this type")),
        (false, None) => {}
    }
    if let Some(g) = meta.generation.filter(|g| *g < 0) {
        causes.push(Cause::invalid("metadata.generation", &json!(g), "must be greater than or equal to 0"));
    }
    causes.extend(labels(meta.labels.as_ref().unwrap_or(&BTreeMap::new()), "metadata.labels"));
    causes.extend(annotations(meta.annotations.as_ref().unwrap_or(&BTreeMap::new()), "metadata.annotations"));
    causes.extend(owner_references(meta.owner_references.as_deref().unwrap_or_default()));
    causes.extend(finalizers(meta.finalizers.as_deref().unwrap_or_default(), "metadata.finalizers"));
    causes
}

/// `ValidateOwnerReferences`: each names an object, and one at most is the controller.
fn owner_references(refs: &[OwnerReference]) -> Vec<Cause> {
    const FIELD: &str = "metadata.ownerReferences";
    let mut causes = Vec::new();
    for r in refs {
        if r.api_version.rsplit('/').next().unwrap_or("").is_empty() {
            causes.push(Cause::invalid(
                &format!("{FIELD}.apiVersion"),
                &json!(r.api_version),
                "version must not be empty",
            ));
        }
        for (field, value) in [("kind", &r.kind), ("name", &r.name), ("uid", &r.uid)] {
            if value.is_empty() {
                causes.push(Cause::invalid(&format!("{FIELD}.{field}"), &json!(value), "must not be empty"));
            }
        }
    }
    let controllers: Vec<String> =
        refs.iter().filter(|r| r.controller == Some(true)).map(|r| format!("{}/{}", r.kind, r.name)).collect();
    if let [first, second, ..] = controllers.as_slice() {
        causes.push(Cause::invalid(
            FIELD,
            &serde_json::to_value(refs).unwrap_or(Value::Null),
            format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {second}"),
        ));
    }
    causes
}

fn immutable<T: PartialEq + serde::Serialize>(field: &str, new: &T, old: &T) -> Option<Cause> {
    (new != old).then(|| Cause::invalid(field, &serde_json::to_value(new).unwrap_or(Value::Null), "field is immutable"))
}

/// `ValidateObjectMetaUpdate`: no new finalizers while deleting, a
/// resourceVersion, no generation decrement, immutable identity, and the
/// rules of a new object for labels, annotations and finalizers.
pub fn object_meta_update(new: &ObjectMeta, old: &ObjectMeta, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_finalizers = old.finalizers.as_deref().unwrap_or_default();
        let mut added: Vec<&String> = new.finalizers.iter().flatten().filter(|f| !old_finalizers.contains(f)).collect();
        added.sort();
        added.dedup();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    if new.resource_version.as_deref().unwrap_or("").is_empty() {
        causes.push(Cause::invalid("metadata.resourceVersion", &json!(""), "must be specified for an update"));
    }
    if new.generation.unwrap_or(0) < old.generation.unwrap_or(0) {
        causes.push(Cause::invalid("metadata.generation", &json!(new.generation), "must not be decremented"));
    }
    causes.extend(immutable("metadata.name", &new.name, &old.name));
    causes.extend(immutable("metadata.namespace", &new.namespace, &old.namespace));
    causes.extend(immutable("metadata.uid", &new.uid, &old.uid));
    causes.extend(immutable("metadata.creationTimestamp", &new.creation_timestamp, &old.creation_timestamp));
    causes.extend(immutable("metadata.deletionTimestamp", &new.deletion_timestamp, &old.deletion_timestamp));
    causes.extend(immutable(
        "metadata.deletionGracePeriodSeconds",
        &new.deletion_grace_period_seconds,
        &old.deletion_grace_period_seconds,
    ));
    causes.extend(common(new, namespaced).into_iter().filter(|c| c.field != "metadata.namespace"));
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn names_follow_their_rule() {
        assert!(name_is_dns_subdomain("web.example-1", false).is_empty());
        assert_eq!(
            name_is_dns_subdomain("Web_1", false),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert!(name_is_dns_subdomain("csr-", true).is_empty(), "a generateName may end in a dash");
        assert!(!name_is_dns_subdomain("csr-", false).is_empty(), "a name may not");
        assert_eq!(name_is_dns_subdomain(&"a".repeat(254), false), vec!["must be no more than 253 characters"]);
        assert!(name_is_dns1035_label("web", false).is_empty());
        assert!(!name_is_dns1035_label("1web", false).is_empty(), "DNS-1035 labels start with a letter");
        assert!(name_is_dns_label("1web", false).is_empty());
        assert!(!name_is_dns_label("a.b", false).is_empty());
    }

    #[test]
    fn labels_annotations_and_finalizers_as_apimachinery() {
        let m = meta(json!({
            "name": "x",
            "labels": {"ok": "fine", "bad key": "v", "k": "bad value!"},
            "annotations": {"Example.com/Mixed-Case": "ok", "no//": "x"},
            "finalizers": ["example.com/cleanup", "a b"],
        }));
        let got = messages(&object_meta(&m, false, name_is_dns_subdomain));
        let expected = [
            "metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "metadata.labels: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ];
        for e in expected {
            assert!(got.contains(&e.to_owned()), "{e}\nnot in\n{got:#?}");
        }
        assert!(got.iter().any(|g| g.starts_with("metadata.annotations: Invalid value: \"no//\": a qualified name")));
        assert!(got.iter().any(|g| g.starts_with("metadata.finalizers: Invalid value: \"a b\": name part")));
        assert_eq!(got.len(), 4, "{got:#?}");
    }

    #[test]
    fn names_namespaces_and_sizes() {
        let none = meta(json!({}));
        assert_eq!(
            messages(&object_meta(&none, true, name_is_dns_subdomain)),
            ["metadata.name: Required value: name or generateName is required", "metadata.namespace: Required value"]
        );
        let in_ns = meta(json!({"name": "x", "namespace": "default"}));
        assert_eq!(
            messages(&object_meta(&in_ns, false, name_is_dns_subdomain)),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let big = meta(json!({"name": "x", "annotations": {"a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)}}));
        assert_eq!(
            messages(&object_meta(&big, false, name_is_dns_subdomain)),
            ["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
    }

    #[test]
    fn updates_keep_identity_and_add_no_finalizers_while_deleting() {
        let old = meta(json!({"name": "x", "uid": "1", "resourceVersion": "5", "generation": 2,
            "deletionTimestamp": "2026-12-01T00:00:00Z", "finalizers": ["a.io/x"]}));
        let new = meta(json!({"name": "x", "uid": "2", "resourceVersion": "5", "generation": 1,
            "deletionTimestamp": "2026-12-01T00:00:00Z", "finalizers": ["a.io/x", "b.io/y"]}));
        assert_eq!(
            messages(&object_meta_update(&new, &old, false)),
            [
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b.io/y\"}",
                "metadata.generation: Invalid value: 1: must not be decremented",
                "metadata.uid: Invalid value: \"2\": field is immutable",
            ]
        );
        let unversioned = meta(json!({"name": "x"}));
        assert_eq!(
            messages(&object_meta_update(&unversioned, &meta(json!({"name": "x"})), false)),
            ["metadata.resourceVersion: Invalid value: \"\": must be specified for an update"]
        );
    }
}
