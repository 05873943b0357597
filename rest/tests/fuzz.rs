//! Property tests of hostile input to the generic API machinery: label and
//! field selectors (no panic, errors with messages, what parses renders back to
//! an equal selector) and merge, JSON and strategic merge patches on arbitrary
//! documents (no panic, errors are 400/422 with a message, merge patches are
//! idempotent, the input document is never changed).
//!
//! Cases per property: `PROPTEST_CASES` (default 256, the CI short mode); e.g.
//! `PROPTEST_CASES=100000 cargo nextest run -p sks-apiserver --test fuzz` for a long run.
#![expect(clippy::unwrap_used, reason = "test support: a panic is how a check fails")]

use proptest::prelude::*;
use serde_json::{Value, json};
use sks_rest::patch::{self, MergeKeys, PatchKind};
use sks_rest::selector::{FieldSelector, LabelSelector};

// ---------------------------------------------------------------------------
// Selectors

/// Tokens of the label selector grammar, valid and not, glued with optional spaces.
fn label_selector_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "a",
        "b",
        "app",
        "tier",
        "example.com/app",
        "x.io/y",
        "-bad",
        "bad-",
        "in",
        "notin",
        "1",
        "-1",
        "42",
        "99999999999999999999",
        "",
        "=",
        "==",
        "!=",
        "!",
        ">",
        "<",
        "(",
        ")",
        ",",
        " ",
        "\t",
        "\0",
        "/",
        "é",
        "a/b/c",
        "Z_z.9",
    ]);
    prop::collection::vec((token, prop::bool::ANY), 0..14).prop_map(|parts| {
        parts.into_iter().map(|(t, space)| if space { format!("{t} ") } else { t.to_owned() }).collect()
    })
}

const FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "spec.x", "a\\", "a!b", "", "x,y"];

fn field_selector_text() -> impl Strategy<Value = String> {
    let term = (
        prop::sample::select(FIELDS.to_vec()),
        prop::sample::select(vec!["=", "==", "!=", "", "!"]),
        prop_oneof!["[a-z0-9.=,\\\\ -]{0,8}", any::<String>()],
    )
        .prop_map(|(f, op, v)| format!("{f}{op}{v}"));
    prop::collection::vec(term, 0..5).prop_map(|t| t.join(","))
}

proptest! {
    #[test]
    fn label_selectors_render_back_to_themselves(s in prop_oneof![4 => label_selector_text(), 1 => any::<String>()]) {
        match LabelSelector::parse(&s) {
            Ok(sel) => {
                let rendered = sel.to_string();
                let again = LabelSelector::parse(&rendered);
                prop_assert_eq!(again.as_ref(), Ok(&sel), "{:?} rendered as {:?}", s, rendered);
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "{s:?}: an error without a message"),
        }
    }

    #[test]
    fn label_selectors_match_without_panicking(
        s in label_selector_text(),
        labels in prop::collection::btree_map(prop::sample::select(vec!["a", "b", "app", "tier", "in"]).prop_map(str::to_owned), prop_oneof!["[a-z0-9-]{0,4}", "-?[0-9]{1,20}"], 0..4),
    ) {
        if let Ok(sel) = LabelSelector::parse(&s) {
            let json = serde_json::to_value(&labels).unwrap();
            prop_assert_eq!(sel.matches(&labels), sel.matches_json(Some(&json)));
            let _ = sel.matches_json(Some(&json!({"a": 1, "b": null})));
        }
    }

    #[test]
    fn field_selectors_render_back_to_the_same_terms(s in prop_oneof![4 => field_selector_text(), 1 => any::<String>()]) {
        match FieldSelector::parse(&s, FIELDS) {
            Ok(sel) => {
                let rendered = sel.to_string();
                let again = FieldSelector::parse(&rendered, FIELDS).map_err(|e| TestCaseError::fail(format!("{s:?} rendered as {rendered:?}: {e}")))?;
                // Terms are kept in the order of their source text, which rendering normalises ("==" is "="):
                // the same terms select the same objects and render the same.
                let twice = FieldSelector::parse(&again.to_string(), FIELDS).unwrap();
                prop_assert_eq!(again.to_string(), twice.to_string());
                for name in ["", "x", "a=b", "a,b", "\\", "é"] {
                    let value_of = |f: &str| if f == "metadata.name" { name.to_owned() } else { format!("{f}:{name}") };
                    prop_assert_eq!(sel.matches(value_of), again.matches(value_of), "{:?} vs {:?}", s, rendered);
                }
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "{s:?}: an error without a message"),
        }
    }
}

// ---------------------------------------------------------------------------
// Patches

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9~/ ]{0,6}".prop_map(Value::from),
    ]
}

/// Keys likely to collide between documents and patches (including JSON pointer escapes).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "spec", "metadata", "ports", "port", "name", "0", "1", "-", "~0", "~1", "a/b", "$patch", ""]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers into (or near) a document: existing paths, their children, `-`, and junk.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        prop::collection::vec(key(), 1..4).prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect()),
        prop::collection::vec(prop_oneof![key(), (0usize..6).prop_map(|i| i.to_string())], 1..4)
            .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect()),
        any::<String>(),
    ]
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "nope"]),
        pointer(),
        pointer(),
        document(),
        any::<bool>(),
    )
        .prop_map(|(op, path, from, value, drop_field)| {
            let mut o = json!({"op": op, "path": path, "from": from, "value": value});
            if drop_field {
                o.as_object_mut().unwrap().remove(if op == "move" || op == "copy" { "from" } else { "value" });
            }
            o
        })
}

const KEYS: MergeKeys = &[("spec.ports", "port"), ("ports", "port"), ("a", "name")];

fn check_error(e: &sks_rest::status::ApiError) -> Result<(), TestCaseError> {
    prop_assert!(matches!(e.code, 400 | 413 | 422), "unexpected status {} ({})", e.code, e.message);
    prop_assert!(!e.message.trim().is_empty());
    Ok(())
}

proptest! {
    #[test]
    fn merge_patches_apply_idempotently(doc in document(), p in document()) {
        let bytes = serde_json::to_vec(&p).unwrap();
        let before = doc.clone();
        match patch::apply(PatchKind::Merge, &doc, &bytes) {
            Ok(once) => {
                prop_assert!(p.is_object());
                // RFC 7386: applying the same merge patch twice changes nothing more.
                prop_assert_eq!(patch::apply(PatchKind::Merge, &once, &bytes).unwrap(), once);
            }
            Err(e) => check_error(&e)?,
        }
        prop_assert_eq!(doc, before);
    }

    #[test]
    fn strategic_merge_patches_never_panic(doc in document(), p in document()) {
        let bytes = serde_json::to_vec(&p).unwrap();
        match patch::apply(PatchKind::Strategic(KEYS), &doc, &bytes) {
            Ok(_) => prop_assert!(p.is_object()),
            Err(e) => check_error(&e)?,
        }
    }

    #[test]
    fn json_patches_never_panic(doc in document(), ops in prop::collection::vec(json_patch_op(), 0..6)) {
        let bytes = serde_json::to_vec(&ops).unwrap();
        let before = doc.clone();
        match patch::apply(PatchKind::Json, &doc, &bytes) {
            Ok(out) => {
                // Every successful `test` held on the result of the operations before it; a patch of only
                // `test` operations leaves the document as it was.
                if ops.iter().all(|o| o["op"] == "test") {
                    prop_assert_eq!(out, doc.clone());
                }
            }
            Err(e) => check_error(&e)?,
        }
        prop_assert_eq!(doc, before);
    }

    #[test]
    fn add_then_test_holds(doc in document(), k in key(), value in document()) {
        let path = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
        let ops = json!([{"op": "add", "path": path, "value": value}, {"op": "test", "path": path, "value": value}]);
        let text = ops.to_string();
        let result = patch::apply(PatchKind::Json, &doc, text.as_bytes());
        if doc.is_object() {
            let out = result.unwrap();
            // What the server holds is the value parsed from the patch's text (serde_json reads floats to within an ULP).
            let sent: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(out.pointer(&path), Some(&sent[0]["value"]));
        } else if let Err(e) = result {
            check_error(&e)?;
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused_with_a_message(doc in document(), bytes in prop::collection::vec(any::<u8>(), 0..64), kind in 0usize..3) {
        let kind = [PatchKind::Merge, PatchKind::Json, PatchKind::Strategic(KEYS)][kind];
        if let Err(e) = patch::apply(kind, &doc, &bytes) {
            check_error(&e)?;
        }
    }
}
