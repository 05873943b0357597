//! `kubectl get` output: server-side Tables (meta.k8s.io/v1) with rendered ages.

use serde_json::{Value, json};

use super::resource::{Column, ResourceDef};
use super::status::{ApiError, ApiResult};

/// What a row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// How the client wants a response rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The objects as JSON.
    Json,
    /// A Table.
    Table(IncludeObject),
    /// PartialObjectMetadata (the metadata client's format).
    Metadata,
}

/// Picks the response format from `Accept` and `includeObject`.
pub fn negotiate(accept: Option<&str>, include_object: Option<&str>) -> ApiResult<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Format::Json) };
    let mut json_ok = false;
    for item in accept.split(',') {
        let mut params = item.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let (mut as_, mut g, mut v) = (None, None, None);
        for p in params {
            match p.split_once('=') {
                Some(("as", x)) => as_ = Some(x),
                Some(("g", x)) => g = Some(x),
                Some(("v", x)) => v = Some(x),
                _ => {}
            }
        }
        if !matches!(media, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match as_ {
            Some("Table") => {
                if g == Some("meta.k8s.io") && matches!(v, Some("v1") | Some("v1beta1")) {
                    let include = match include_object {
                        None | Some("") | Some("Metadata") => IncludeObject::Metadata,
                        Some("Object") => IncludeObject::Object,
                        Some("None") => IncludeObject::None,
                        Some(other) => {
                            return Err(ApiError::bad_request(format!("includeObject: unsupported value {other:?}")));
                        }
                    };
                    return Ok(Format::Table(include));
                }
            }
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList") => {
                if g == Some("meta.k8s.io") {
                    return Ok(Format::Metadata);
                }
            }
            Some(_) => {}
            None => json_ok = true,
        }
    }
    if json_ok {
        Ok(Format::Json)
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept:?})"
        )))
    }
}

/// Age as kubectl prints it (apimachinery's `duration.HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return if h % 24 == 0 { format!("{}d", h / 24) } else { format!("{}d{}h", h / 24, h % 24) };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let d = h / 24;
        return if d % 365 == 0 { format!("{}y", d / 365) } else { format!("{}y{}d", d / 365, d % 365) };
    }
    format!("{}y", h / 24 / 365)
}

/// The age of a timestamp (RFC 3339) now, as printed.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else { return "<unknown>".into() };
    human_duration(jiff::Timestamp::now().as_second() - ts.as_second())
}

fn name_column() -> Value {
    json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0})
}

fn age_column() -> Value {
    json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0})
}

fn column_def(c: &Column) -> Value {
    json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// A Table of `objects`; `headers` false omits the column definitions (watch events after the first).
pub fn table(
    def: &ResourceDef,
    objects: &[&Value],
    resource_version: &str,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let columns: Vec<Value> = if headers {
        std::iter::once(name_column())
            .chain(def.columns.iter().map(column_def))
            .chain(std::iter::once(age_column()))
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            cells.extend(def.columns.iter().map(|c| (c.cell)(obj)));
            cells.push(Value::String(age(obj["metadata"]["creationTimestamp"].as_str())));
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(obj),
                IncludeObject::Object => row["object"] = (*obj).clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_render_like_kubectl() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (10 * 365 * 86400, "10y"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn negotiates_tables_like_kubectl_asks() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl), None).unwrap(), Format::Table(IncludeObject::Metadata));
        assert_eq!(negotiate(Some(kubectl), Some("Object")).unwrap(), Format::Table(IncludeObject::Object));
        assert_eq!(negotiate(Some("application/json"), None).unwrap(), Format::Json);
        assert_eq!(negotiate(None, None).unwrap(), Format::Json);
        assert_eq!(negotiate(Some("application/json;as=Table;v=v1;g=other.io"), None).unwrap_err().code, 406);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf"), None).unwrap_err().code, 406);
        assert_eq!(negotiate(Some(kubectl), Some("Everything")).unwrap_err().code, 400);
    }
}
