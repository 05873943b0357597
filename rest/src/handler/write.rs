//! The writes: create, update, patch and delete of objects and subresources.
//! Creates and changes go through the one write pipeline (`crate::write`);
//! an update and a patch differ only in how the new version is made from the
//! current one.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use super::respond::{add_warnings, json_response, ok, render_with};
use super::{ApiServer, Call, RequestBody};
use crate::body::ResponseBody;
use crate::entry::Entry;
use crate::openapi;
use crate::patch;
use crate::request::{FieldValidation, WriteOptions};
use crate::resource::ResourceDef;
use crate::status::{ApiError, ApiResult, success_status};
use crate::storage::{DeleteOptions, Propagation};
use crate::write;

/// Makes the new version of an object from its current one.
type Make<'a> = Box<dyn FnOnce(&Value) -> ApiResult<Value> + Send + 'a>;

impl ApiServer {
    /// Creates an object through the write pipeline.
    pub(super) async fn create(&self, call: &Call<'_>, body: RequestBody) -> ApiResult<Response<ResponseBody>> {
        let creater = call.storage.creater().ok_or_else(|| call.not_allowed("create"))?;
        let (obj, warnings) = self.read_object(body, call.headers, call.def, call.opts).await?;
        let obj = with_defaults(obj, call.def, call.path.namespace.as_deref())?;
        let created = write::create(call.def, creater, call.ctx, obj).await?;
        let mut resp = render_with(call.def, &Entry::new(Arc::new(created)), call.format, StatusCode::CREATED);
        add_warnings(&mut resp, &warnings);
        Ok(resp)
    }

    /// Updates (PUT) or patches the object or its subresource `sub`: the
    /// storage applies the change to its current version atomically, so a
    /// patch never needs a retry.
    pub(super) async fn change(
        &self,
        call: &Call<'_>,
        sub: Option<&str>,
        verb: &str,
        body: RequestBody,
    ) -> ApiResult<Response<ResponseBody>> {
        let updater = call.storage.updater().ok_or_else(|| call.not_allowed(verb))?;
        // A view of another kind (a Scale) is checked against neither our schema nor our apiVersion.
        let own_kind = sub.is_none_or(|s| call.def.subresource(s).is_some_and(|d| d.kind == call.def.kind));
        let unknown_fields = Mutex::new(Vec::new());
        let make: Make<'_> = if verb == "update" {
            let obj = self.read_json(body, call.headers).await?;
            let obj = if own_kind { with_defaults(obj, call.def, call.path.namespace.as_deref())? } else { obj };
            let unknown = if own_kind { self.unknown(call.def, &obj) } else { Vec::new() };
            check_unknown(&unknown, call.opts.field_validation)?;
            *unknown_fields.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = unknown;
            Box::new(move |_current: &Value| Ok(obj))
        } else {
            let content_type = call.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let kind = patch::kind(content_type, call.def.strategic_merge)?;
            let raw = self.read_body(body).await?;
            let (def, mode, unknown_fields) = (call.def, call.opts.field_validation, &unknown_fields);
            Box::new(move |current: &Value| {
                let patched = patch::apply(kind, current, &raw)?;
                if own_kind {
                    let unknown = self.unknown(def, &patched);
                    check_unknown(&unknown, mode)?;
                    *unknown_fields.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = unknown;
                }
                Ok(patched)
            })
        };
        let updated = write::update(call.def, updater, call.ctx, call.name(), sub, make).await?;
        let unknown = unknown_fields.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut resp = match sub {
            Some(_) => ok(&updated),
            None => render_with(call.def, &Entry::new(Arc::new(updated)), call.format, StatusCode::OK),
        };
        add_warnings(&mut resp, &unknown_warnings(&unknown, call.opts.field_validation));
        Ok(resp)
    }

    /// Deletes an object, honouring DeleteOptions' preconditions and dryRun.
    pub(super) async fn delete(&self, call: &Call<'_>, body: RequestBody) -> ApiResult<Response<ResponseBody>> {
        let deleter = call.storage.deleter().ok_or_else(|| call.not_allowed("delete"))?;
        let raw = self.read_body(body).await?;
        let mut ctx = call.ctx.clone();
        // Query parameters first, then the body's fields, as kube-apiserver decodes them.
        let mut del = delete_options_of_query(call.query)?;
        if !raw.is_empty() {
            let v: Value = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            del.apply_json(&v)?;
            ctx.dry_run |= v["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All"));
        }
        let name = call.name();
        let obj = deleter.delete(&ctx, name, del).await?;
        if obj.get("kind").is_some() {
            return Ok(ok(&obj));
        }
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("");
        Ok(ok(&success_status(call.def.group_resource(), name, uid)))
    }

    /// Reads a subresource.
    pub(super) async fn get_subresource(&self, call: &Call<'_>, sub: &str) -> ApiResult<Response<ResponseBody>> {
        Ok(ok(&call.storage.get_subresource(call.ctx, call.name(), sub).await?))
    }

    /// Posts to a subresource (an eviction).
    pub(super) async fn create_subresource(
        &self,
        call: &Call<'_>,
        sub: &str,
        body: RequestBody,
    ) -> ApiResult<Response<ResponseBody>> {
        let obj = self.read_json(body, call.headers).await?;
        let created = call.storage.create_subresource(call.ctx, call.name(), sub, obj).await?;
        Ok(json_response(StatusCode::CREATED, &created, "application/json"))
    }

    pub(super) async fn read_body(&self, mut body: RequestBody) -> ApiResult<Bytes> {
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.config.max_body_bytes {
                    // Read the rest (within bounds) so the client, still sending, gets the 413, not a reset.
                    crate::limits::drain(body).await;
                    return Err(ApiError::too_large(self.config.max_body_bytes));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    }

    pub(super) async fn read_json(&self, body: RequestBody, headers: &HeaderMap) -> ApiResult<Value> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !matches!(media, "application/json" | "" | "*/*") {
            return Err(ApiError::unsupported_media_type(media, &["application/json"]));
        }
        let raw = self.read_body(body).await?;
        let value: Value = serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        Ok(value)
    }

    /// Reads an object of `def`'s kind, applying `fieldValidation`.
    pub(super) async fn read_object(
        &self,
        body: RequestBody,
        headers: &HeaderMap,
        def: &ResourceDef,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, Vec<String>)> {
        let obj = self.read_json(body, headers).await?;
        let unknown = self.unknown(def, &obj);
        if opts.field_validation == FieldValidation::Strict && !unknown.is_empty() {
            return Err(strict_error(&unknown));
        }
        Ok((obj, unknown_warnings(&unknown, opts.field_validation)))
    }

    fn unknown(&self, def: &ResourceDef, obj: &Value) -> Vec<String> {
        let name = openapi::definition_name(def.group, def.version, def.kind);
        match self.docs.schemas.get(&name) {
            Some(schema) => openapi::unknown_fields(schema, obj, &self.docs.schemas),
            None => Vec::new(),
        }
    }
}

/// The `gracePeriodSeconds` and `propagationPolicy` query parameters of a DELETE.
fn delete_options_of_query(query: &crate::request::Query) -> ApiResult<DeleteOptions> {
    let mut del = DeleteOptions::default();
    if let Some(g) = query.get("gracePeriodSeconds").filter(|g| !g.is_empty()) {
        let g = g.parse().map_err(|_| ApiError::bad_request(format!("gracePeriodSeconds: invalid integer {g:?}")))?;
        del.grace_period_seconds = Some(g);
    }
    if let Some(p) = query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        del.propagation = Some(Propagation::parse(p)?);
    }
    Ok(del)
}

/// Refuses unknown fields under `fieldValidation=Strict`.
fn check_unknown(unknown: &[String], mode: FieldValidation) -> ApiResult<()> {
    if mode == FieldValidation::Strict && !unknown.is_empty() {
        return Err(strict_error(unknown));
    }
    Ok(())
}

fn strict_error(unknown: &[String]) -> ApiError {
    let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    ApiError::bad_request(format!("strict decoding error: {}", list.join(", ")))
}

fn unknown_warnings(unknown: &[String], mode: FieldValidation) -> Vec<String> {
    if mode == FieldValidation::Warn {
        unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect()
    } else {
        Vec::new()
    }
}

/// Checks apiVersion/kind of a written object and fills them and the namespace in.
fn with_defaults(mut obj: Value, def: &ResourceDef, namespace: Option<&str>) -> ApiResult<Value> {
    let api_version = def.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!("apiVersion {v:?} does not match the URL's {api_version:?}")));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(def.kind),
        Some(k) if k == def.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("kind {k:?} does not match the URL's {:?}", def.kind))),
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if let Some(ns) = namespace {
        match obj["metadata"]["namespace"].as_str() {
            None | Some("") => obj["metadata"]["namespace"] = json!(ns),
            Some(other) if other == ns => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({other}) does not match the namespace sent on the request ({ns})"
                )));
            }
        }
    }
    Ok(obj)
}
