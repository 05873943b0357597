//! `kubectl get` output: server-side Tables (meta.k8s.io/v1) with rendered ages.

use serde_json::{Value, json};

use super::entry::{Entry, Row};
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
    column_def(&Column::age())
}

fn column_def(c: &Column) -> Value {
    json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
}

/// Writes `entry`'s row, its AGE computed for `now` (seconds since the epoch).
/// AGE cells as of one instant; objects created in the same second share one rendering.
struct Ages {
    now: i64,
    last: Option<(Option<i64>, Vec<u8>)>,
}

impl Ages {
    fn write(&mut self, out: &mut Vec<u8>, created: Option<i64>) {
        if !matches!(&self.last, Some((c, _)) if *c == created) {
            let age = match created {
                Some(created) => human_duration(self.now - created),
                None => "<unknown>".to_owned(),
            };
            self.last = Some((created, serde_json::to_vec(&age).expect("strings serialise")));
        }
        if let Some((_, cell)) = &self.last {
            out.extend_from_slice(cell);
        }
    }
}

fn write_row(out: &mut Vec<u8>, def: &ResourceDef, entry: &Entry, include: IncludeObject, ages: &mut Ages) {
    let fresh;
    let row = match entry.memo.row.get_or_init(|| Row::render(def, &entry.object)) {
        row if row.is_for(def) => row,
        // The memo holds another kind's row (a cache served under two kinds): render without keeping it.
        _ => {
            fresh = Row::render(def, &entry.object);
            &fresh
        }
    };
    out.extend_from_slice(&row.head);
    ages.write(out, row.created);
    out.extend_from_slice(&row.tail);
    out.push(b']');
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            out.extend_from_slice(b",\"object\":");
            out.extend_from_slice(entry.metadata_json());
        }
        IncludeObject::Object => {
            out.extend_from_slice(b",\"object\":");
            out.extend_from_slice(entry.json());
        }
    }
    out.push(b'}');
}

/// A Table of `entries`, as JSON; `headers` false omits the column definitions (watch events after the first).
/// Rows come from the entries' memos, so an unchanged object is rendered once, not once per request.
pub fn table(
    def: &ResourceDef,
    entries: &[&Entry],
    resource_version: &str,
    include: IncludeObject,
    headers: bool,
) -> Vec<u8> {
    table_at(def, entries, resource_version, include, headers, jiff::Timestamp::now().as_second())
}

/// [`table`] with ages as of `now` (seconds since the epoch).
fn table_at(
    def: &ResourceDef,
    entries: &[&Entry],
    resource_version: &str,
    include: IncludeObject,
    headers: bool,
    now: i64,
) -> Vec<u8> {
    let per_row = |e: &&Entry| {
        let row = e.memo.row.get().map_or(128, |r| r.head.len() + r.tail.len() + 16);
        row + match include {
            IncludeObject::None => 0,
            IncludeObject::Metadata => e.memo.metadata_len().unwrap_or(256) + 10,
            IncludeObject::Object => e.memo.json_len().unwrap_or(1024) + 10,
        }
    };
    let mut out = Vec::with_capacity(512 + entries.iter().map(per_row).sum::<usize>());
    out.extend_from_slice(b"{\"apiVersion\":\"meta.k8s.io/v1\",\"columnDefinitions\":");
    let columns: Vec<Value> = if headers {
        let placed = def.columns.iter().any(Column::is_age);
        std::iter::once(name_column())
            .chain(def.columns.iter().map(|c| if c.is_age() { age_column() } else { column_def(c) }))
            .chain((!placed).then(age_column))
            .collect()
    } else {
        Vec::new()
    };
    serde_json::to_writer(&mut out, &columns).expect("columns serialise");
    out.extend_from_slice(b",\"kind\":\"Table\",\"metadata\":{\"resourceVersion\":");
    serde_json::to_writer(&mut out, resource_version).expect("strings serialise");
    out.extend_from_slice(b"},\"rows\":[");
    let mut ages = Ages { now, last: None };
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_row(&mut out, def, entry, include, &mut ages);
    }
    out.extend_from_slice(b"]}");
    out
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

    fn def() -> ResourceDef {
        ResourceDef {
            group: "example.com",
            version: "v1",
            plural: "things",
            singular: "thing",
            kind: "Thing",
            short_names: &[],
            categories: &[],
            namespaced: false,
            verbs: vec!["get", "list"],
            subresources: Vec::new(),
            columns: vec![Column {
                name: "Size",
                type_: "integer",
                format: "",
                priority: 0,
                description: "Size.",
                cell: |o| o["spec"]["size"].clone(),
            }],
            schema: json!({}),
            extra_field_selectors: &[],
            strategic_merge: None,
        }
    }

    const T0: i64 = 1_700_000_000;

    fn thing(name: &str, size: i64) -> Value {
        let created = jiff::Timestamp::from_second(T0).unwrap().to_string();
        json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": name, "creationTimestamp": created, "labels": {"a": "b"}}, "spec": {"size": size}})
    }

    fn rendered(entries: &[&Entry], include: IncludeObject, now: i64) -> Value {
        serde_json::from_slice(&table_at(&def(), entries, "42", include, true, now)).unwrap()
    }

    #[test]
    fn tables_have_kube_apiservers_shape() {
        let e = Entry::new(std::sync::Arc::new(thing("a", 3)));
        let t = rendered(&[&e], IncludeObject::Metadata, T0 + 125);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Size", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["a", 3, "2m5s"]));
        assert_eq!(t["rows"][0]["object"], super::super::entry::partial_metadata(&e.object));
        let t = rendered(&[&e], IncludeObject::Object, T0 + 125);
        assert_eq!(t["rows"][0]["object"], *e.object);
        let t = rendered(&[&e], IncludeObject::None, T0 + 125);
        assert_eq!(t["rows"][0], json!({"cells": ["a", 3, "2m5s"]}));
        let t: Value = serde_json::from_slice(&table_at(&def(), &[], "7", IncludeObject::Metadata, false, T0)).unwrap();
        assert_eq!(t["columnDefinitions"], json!([]));
        assert_eq!(t["rows"], json!([]));
    }

    #[test]
    fn age_goes_where_the_kind_places_it() {
        let mut d = def();
        d.columns.insert(0, Column::age());
        d.columns.push(Column { name: "Wide", priority: 1, cell: |_| json!("w"), ..d.columns[1].clone() });
        let e = Entry::new(std::sync::Arc::new(thing("a", 3)));
        let t: Value = serde_json::from_slice(&table_at(&d, &[&e], "1", IncludeObject::None, true, T0 + 5)).unwrap();
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Age", "Size", "Wide"]);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "5s", 3, "w"]));
    }

    #[test]
    fn cached_rows_render_ages_at_request_time() {
        let e = Entry::new(std::sync::Arc::new(thing("a", 3)));
        assert_eq!(rendered(&[&e], IncludeObject::None, T0 + 30)["rows"][0]["cells"][2], "30s");
        assert!(e.memo.row.get().is_some(), "the row is kept for the next request");
        assert_eq!(rendered(&[&e], IncludeObject::None, T0 + 3 * 3600)["rows"][0]["cells"][2], "3h");
        let mut no_stamp = thing("b", 1);
        no_stamp["metadata"].as_object_mut().unwrap().remove("creationTimestamp");
        let no_stamp = Entry::new(std::sync::Arc::new(no_stamp));
        let mut older = thing("c", 1);
        older["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::from_second(T0 - 600).unwrap().to_string());
        let older = Entry::new(std::sync::Arc::new(older));
        let t = rendered(&[&e, &e, &no_stamp, &older, &e], IncludeObject::None, T0 + 60);
        let ages: Vec<&Value> = t["rows"].as_array().unwrap().iter().map(|r| &r["cells"][2]).collect();
        assert_eq!(ages, ["60s", "60s", "<unknown>", "11m", "60s"], "each row its own age");
    }

    #[test]
    fn a_row_cached_for_another_kind_is_not_reused() {
        let e = Entry::new(std::sync::Arc::new(thing("a", 3)));
        rendered(&[&e], IncludeObject::None, T0);
        let mut other = def();
        other.kind = "Other";
        other.columns[0].cell = |_| json!("x");
        let t: Value = serde_json::from_slice(&table_at(&other, &[&e], "1", IncludeObject::None, true, T0)).unwrap();
        assert_eq!(t["rows"][0]["cells"], json!(["a", "x", "0s"]));
        assert_eq!(rendered(&[&e], IncludeObject::None, T0)["rows"][0]["cells"], json!(["a", 3, "0s"]));
    }

    #[test]
    fn a_changed_object_rerenders_and_a_deleted_one_disappears() {
        use super::super::cache::ObjectCache;
        let cache = ObjectCache::new(1, 100);
        cache.upsert(thing("a", 1));
        cache.upsert(thing("b", 1));
        let list = |cache: &ObjectCache| {
            let (entries, _) = cache.snapshot_entries();
            let refs: Vec<&Entry> = entries.iter().collect();
            rendered(&refs, IncludeObject::Object, T0)["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["cells"].clone(), r["object"]["metadata"]["resourceVersion"].clone()))
                .collect::<Vec<_>>()
        };
        let first = list(&cache);
        assert_eq!(
            first.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
            [json!(["a", 1, "0s"]), json!(["b", 1, "0s"])]
        );
        cache.upsert(thing("a", 1)); // no change: same version, same memo
        assert_eq!(list(&cache), first);
        let b = cache.upsert(thing("b", 5));
        let second = list(&cache);
        assert_eq!(second[0], first[0]);
        assert_eq!(second[1], (json!(["b", 5, "0s"]), b["metadata"]["resourceVersion"].clone()));
        cache.remove(&(String::new(), "a".into()));
        let third = list(&cache);
        assert_eq!(third, [second[1].clone()]);
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
