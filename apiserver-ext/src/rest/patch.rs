//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).
//! Strategic merge and apply patches are refused as kube-apiserver refuses them for CRDs.

use serde_json::Value;

use super::status::{ApiError, ApiResult};

/// kube-apiserver's limit on JSON patch operations.
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// The patch content types served.
pub const ACCEPTED: &[&str] = &["application/json-patch+json", "application/merge-patch+json"];

/// A patch kind, from the request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386.
    Merge,
    /// RFC 6902.
    Json,
}

/// The patch kind of `content_type`; 415 for strategic merge, apply and anything else.
pub fn kind(content_type: Option<&str>) -> ApiResult<PatchKind> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        other => Err(ApiError::unsupported_media_type(other, ACCEPTED)),
    }
}

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
            // A failed `test` operation is a conflict in kube-apiserver's terms too (422 there: keep it).
            json_patch::patch(&mut out, &ops)
                .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))?;
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
    fn strategic_and_apply_patches_are_refused_like_for_crds() {
        let e = kind(Some("application/strategic-merge-patch+json")).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.starts_with("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json"), "{}", e.message);
        assert_eq!(kind(Some("application/apply-patch+yaml")).unwrap_err().code, 415);
        assert_eq!(kind(Some("application/merge-patch+json; charset=utf-8")).unwrap(), PatchKind::Merge);
    }
}
