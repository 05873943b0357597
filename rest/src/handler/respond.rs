//! Building responses: JSON documents, encoded lists and tables, Status errors, warnings.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::body::{ResponseBody, full};
use crate::cache::rv_of;
use crate::entry::Entry;
use crate::resource::ResourceDef;
use crate::status::ApiError;
use crate::table::{Format, table};

/// The media type of a Table answer.
pub(super) const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(super) fn json_response(code: StatusCode, value: &Value, content_type: &'static str) -> Response<ResponseBody> {
    bytes_response(code, serde_json::to_vec(value).expect("responses serialise"), content_type)
}

pub(super) fn bytes_response(
    code: StatusCode,
    bytes: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A list document around already encoded items.
pub(super) fn list_json(api_version: &str, kind: &str, resource_version: &str, items: &[&Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version).expect("strings serialise");
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"],\"kind\":");
    serde_json::to_writer(&mut out, kind).expect("strings serialise");
    out.extend_from_slice(b",\"metadata\":{\"resourceVersion\":");
    serde_json::to_writer(&mut out, resource_version).expect("strings serialise");
    out.extend_from_slice(b"}}");
    out
}

pub(super) fn ok(value: &Value) -> Response<ResponseBody> {
    json_response(StatusCode::OK, value, "application/json")
}

pub(super) fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let mut resp = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
        "application/json",
    );
    if let Some(secs) = e.retry_after() {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub(super) fn text(code: StatusCode, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

pub(super) fn add_warnings(resp: &mut Response<ResponseBody>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

pub(super) fn render_with(
    def: &ResourceDef,
    entry: &Entry,
    format: Format,
    code: StatusCode,
) -> Response<ResponseBody> {
    match format {
        Format::Json => bytes_response(code, entry.json().clone(), "application/json"),
        Format::Metadata => bytes_response(code, entry.metadata_json().clone(), "application/json"),
        Format::Table(include) => {
            let rv = rv_of(&entry.object).to_string();
            bytes_response(code, table(def, &[entry], &rv, include, true), TABLE_CONTENT_TYPE)
        }
    }
}
