//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).
//! Strategic merge and apply patches are refused as kube-apiserver refuses them for CRDs.

use serde_json::Value;

use super::status::{ApiError, ApiResult};

/// kube-apiserver's limit on JSON patch operations.
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// kube-apiserver's limit on what the `copy` operations of one JSON patch copy in all
/// (`AccumulatedCopySizeLimit`: twice the 3 MiB request limit).
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 6 << 20;

/// The size of `v` as JSON text, counted up to a little past `limit`.
fn json_size(v: &Value, limit: usize) -> usize {
    struct Count(usize, usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > self.1 { Err(std::io::Error::other("limit")) } else { Ok(buf.len()) }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0, limit);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The patch content types served.
pub const ACCEPTED: &[&str] = &["application/json-patch+json", "application/merge-patch+json"];

/// With strategic merge (built-in kinds only; custom resources refuse it).
pub const ACCEPTED_STRATEGIC: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];

/// The merge keys of the lists a kind merges by key in a strategic merge patch
/// (`spec.ports` by `port`...); every other list is replaced.
pub type MergeKeys = &'static [(&'static str, &'static str)];

/// A patch kind, from the request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386.
    Merge,
    /// RFC 6902.
    Json,
    /// Kubernetes' strategic merge patch, for built-in kinds.
    Strategic(MergeKeys),
}

/// The patch kind of `content_type`; strategic merge only when the kind has
/// `strategic` merge keys; 415 for apply patches and anything else.
pub fn kind(content_type: Option<&str>, strategic: Option<MergeKeys>) -> ApiResult<PatchKind> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    match (media, strategic) {
        ("application/merge-patch+json", _) => Ok(PatchKind::Merge),
        ("application/json-patch+json", _) => Ok(PatchKind::Json),
        ("application/strategic-merge-patch+json", Some(keys)) => Ok(PatchKind::Strategic(keys)),
        (other, Some(_)) => Err(ApiError::unsupported_media_type(other, ACCEPTED_STRATEGIC)),
        (other, None) => Err(ApiError::unsupported_media_type(other, ACCEPTED)),
    }
}

/// A strategic merge patch: a merge patch whose lists with a merge key merge
/// element by element (`$patch: delete` removes one), and whose `$`
/// directives of ordering and key retention are accepted and ignored.
fn strategic(doc: &mut Value, patch: &Value, keys: MergeKeys, path: &str) {
    let (Some(target), Some(p)) = (doc.as_object_mut(), patch.as_object()) else {
        *doc = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        if let Some(m) = replaced.as_object_mut() {
            m.remove("$patch");
        }
        *doc = replaced;
        return;
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Array(items) => match keys.iter().find(|(p, _)| *p == child).map(|(_, key)| *key) {
                Some(key) => {
                    let mut merged = target.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
                    for item in items {
                        let id = &item[key];
                        let pos = merged.iter().position(|m| &m[key] == id);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                merged.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic(&mut merged[i], item, keys, &child),
                            (None, false) => merged.push(item.clone()),
                        }
                    }
                    target.insert(k.clone(), Value::Array(merged));
                }
                None => {
                    target.insert(k.clone(), v.clone());
                }
            },
            Value::Object(_) => {
                let entry = target.entry(k.clone()).or_insert(Value::Null);
                if !entry.is_object() {
                    *entry = Value::Object(Default::default());
                }
                strategic(entry, v, keys, &child);
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// kube-apiserver's answer to a JSON patch that does not apply (a `test`
/// that fails, a path that is gone): 422 Invalid with this message and no
/// detail, which clients take for "the object changed since I read it".
pub const NOT_APPLICABLE: &str = "the server rejected our request due to an error in our request";

/// Applies `patch` (raw body) to `doc`.
pub fn apply(kind: PatchKind, doc: &Value, patch: &[u8]) -> ApiResult<Value> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut out = doc.clone();
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut out, &patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not a list of operations: {e}")))?;
            if ops.0.len() > MAX_JSON_PATCH_OPS {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "the allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {}",
                        ops.0.len()
                    ),
                ));
            }
            // A failed `test` operation is no 409 in kube-apiserver either: any operation that does
            // not apply is a 422 whose message says nothing more ([`NOT_APPLICABLE`]).
            // `out` is a copy, so a failed patch needs no undo; copies are bounded as kube-apiserver bounds
            // them, or a few dozen `copy` operations of the root into itself would need terabytes.
            let mut copied = 0usize;
            for (i, op) in ops.0.iter().enumerate() {
                if let json_patch::PatchOperation::Copy(c) = op
                    && let Some(source) = out.pointer(c.from.as_str())
                {
                    copied = copied.saturating_add(json_size(
                        source,
                        MAX_JSON_PATCH_COPY_BYTES - copied.min(MAX_JSON_PATCH_COPY_BYTES),
                    ));
                    if copied > MAX_JSON_PATCH_COPY_BYTES {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            format!(
                                "the JSON patch failed: operation '/{i}' copies more than the limit of {MAX_JSON_PATCH_COPY_BYTES} bytes in all"
                            ),
                        ));
                    }
                }
                json_patch::patch_unsafe(&mut out, std::slice::from_ref(op)).map_err(|e| {
                    tracing::debug!(operation = i, path = %e.path, error = %e.kind, "a JSON patch operation does not apply");
                    ApiError::new(422, "Invalid", NOT_APPLICABLE)
                })?;
            }
        }
        PatchKind::Strategic(keys) => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
            }
            strategic(&mut out, &patch, keys, "");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patches() {
        let doc = json!({"spec": {"replicas": 3, "taints": [{"key": "a"}]}, "metadata": {"labels": {"x": "1"}}});
        let merged =
            apply(PatchKind::Merge, &doc, br#"{"spec":{"replicas":5},"metadata":{"labels":{"x":null,"y":"2"}}}"#)
                .unwrap();
        assert_eq!(
            merged,
            json!({"spec": {"replicas": 5, "taints": [{"key": "a"}]}, "metadata": {"labels": {"y": "2"}}})
        );
        let patched = apply(
            PatchKind::Json,
            &doc,
            br#"[{"op":"test","path":"/spec/replicas","value":3},{"op":"remove","path":"/spec/taints/0"}]"#,
        )
        .unwrap();
        assert_eq!(patched["spec"]["taints"], json!([]));
        assert_eq!(
            apply(PatchKind::Json, &doc, br#"[{"op":"test","path":"/spec/replicas","value":4}]"#).unwrap_err().code,
            422
        );
        assert_eq!(apply(PatchKind::Merge, &doc, b"{nope").unwrap_err().code, 400);
    }

    #[test]
    fn json_patch_copies_are_bounded() {
        // Each copy doubles the document: 40 of them would need 2^40 times its size.
        let ops: Vec<Value> = (0..40).map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")})).collect();
        let doc = json!({"x": "y".repeat(1000)});
        let e = apply(PatchKind::Json, &doc, serde_json::to_string(&ops).unwrap().as_bytes()).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("copies more than the limit of 6291456 bytes"), "{}", e.message);
        // A few copies are fine; an operation that does not apply is kube-apiserver's 422.
        let ok = apply(PatchKind::Json, &doc, br#"[{"op":"copy","from":"/x","path":"/z"}]"#).unwrap();
        assert_eq!(ok["z"], doc["x"]);
        let e = apply(PatchKind::Json, &doc, br#"[{"op":"test","path":"/x","value":1}]"#).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (422, NOT_APPLICABLE), "as kube-apiserver words it");
        let e = apply(PatchKind::Json, &doc, br#"[{"op":"remove","path":"/gone"}]"#).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (422, NOT_APPLICABLE));
    }

    #[test]
    fn strategic_merge_merges_keyed_lists() {
        const KEYS: MergeKeys = &[("spec.ports", "port")];
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 80, "nodePort": 30080}, {"port": 443}], "selector": {"x": "y"}}});
        let patch = br#"{"$setElementOrder/spec.ports":[{"port":80}],"metadata":{"labels":{"b":"2"}},"spec":{"ports":[{"port":80,"name":"http"},{"port":443,"$patch":"delete"},{"port":8080}],"selector":null}}"#;
        let out = apply(PatchKind::Strategic(KEYS), &doc, patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 80, "nodePort": 30080, "name": "http"}, {"port": 8080}]}})
        );
        assert_eq!(
            kind(Some("application/strategic-merge-patch+json"), Some(KEYS)).unwrap(),
            PatchKind::Strategic(KEYS)
        );
    }

    #[test]
    fn strategic_and_apply_patches_are_refused_like_for_crds() {
        let e = kind(Some("application/strategic-merge-patch+json"), None).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.starts_with("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json"), "{}", e.message);
        assert_eq!(kind(Some("application/apply-patch+yaml"), None).unwrap_err().code, 415);
        assert_eq!(kind(Some("application/merge-patch+json; charset=utf-8"), None).unwrap(), PatchKind::Merge);
    }
}
