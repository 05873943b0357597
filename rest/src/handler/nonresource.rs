//! What is not a resource: health, version, discovery, and the OpenAPI
//! documents (made once at start, served with ETags and immutable hashes).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use super::ApiServer;
use super::respond::{error_response, ok, text};
use crate::body::{ResponseBody, full};
use crate::discovery;
use crate::openapi;
use crate::request::{Query, Route};
use crate::resource::ResourceDef;
use crate::status::ApiError;
use crate::storage::BoxFuture;

/// The OpenAPI documents, encoded once.
pub(super) struct Docs {
    v2: Bytes,
    v2_etag: String,
    v3: BTreeMap<(String, String), (Bytes, String)>,
    /// Every schema by definition name, for unknown-field checks.
    pub(super) schemas: Map<String, Value>,
}

impl Docs {
    /// The v2 document and one v3 document per group version of `defs`.
    pub(super) fn build(defs: &[&ResourceDef], extra_schemas: &openapi::ExtraSchemas, title: &str) -> Self {
        let v2 = openapi::v2_document(defs, extra_schemas, title);
        let v2_etag = format!("\"{}\"", &openapi::hash(&v2)[..32]);
        let mut v3 = BTreeMap::new();
        let mut schemas = Map::new();
        for (group, versions) in discovery::groups(defs) {
            for version in versions {
                let mine: Vec<&ResourceDef> =
                    defs.iter().copied().filter(|d| d.group == group && d.version == version).collect();
                let doc = openapi::v3_document(&mine, extra_schemas, title);
                schemas.extend(openapi::schemas_of(&doc));
                let hash = openapi::hash(&doc);
                v3.insert(
                    (group.clone(), version),
                    (Bytes::from(serde_json::to_vec(&doc).expect("documents serialise")), hash),
                );
            }
        }
        let v2 = Bytes::from(serde_json::to_vec(&v2).expect("documents serialise"));
        Docs { v2, v2_etag, v3, schemas }
    }
}

impl ApiServer {
    pub(super) fn openapi_v3_root(&self) -> BoxFuture<'_, Response<ResponseBody>> {
        let mut paths: Map<String, Value> = self
            .docs
            .v3
            .iter()
            .map(|((g, v), (_, hash))| {
                let key = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
                (key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}))
            })
            .collect();
        Box::pin(async move {
            if let Some(ext) = &self.extension {
                paths.extend(ext.openapi_v3_paths().await);
            }
            ok(&json!({"paths": paths}))
        })
    }

    pub(super) fn health(&self, probe: &str, query: &Query) -> Response<ResponseBody> {
        let failure = if probe == "readyz" { self.readiness() } else { None };
        let verbose = query.get("verbose").is_some();
        match failure {
            None if verbose => text(StatusCode::OK, format!("[+]ping ok\n[+]caches ok\n{probe} check passed\n")),
            None => text(StatusCode::OK, "ok".into()),
            Some(why) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("[+]ping ok\n[-]caches failed: {why}\n{probe} check failed\n"),
            ),
        }
    }

    pub(super) fn non_resource(
        &self,
        route: Route,
        headers: &HeaderMap,
        query: &Query,
        uri: &http::Uri,
    ) -> Response<ResponseBody> {
        let defs = self.defs();
        match route {
            Route::Version => ok(&self.config.version),
            Route::CoreVersions => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                ok(&discovery::core_versions(&defs, host))
            }
            Route::Groups => {
                let mut doc = discovery::group_list(&defs);
                if let (Some(ext), Some(groups)) = (&self.extension, doc["groups"].as_array_mut()) {
                    groups.extend(ext.groups());
                }
                ok(&doc)
            }
            Route::Group(g) => match discovery::group(&defs, &g) {
                Some(doc) => ok(&doc),
                None => error_response(&ApiError::no_route()),
            },
            Route::Resources(g, v) => match discovery::resource_list(&defs, &g, &v) {
                Some(doc) => ok(&doc),
                None => error_response(&ApiError::no_route()),
            },
            Route::OpenApiV2 if wants_protobuf_v2(headers) => {
                // kubectl's client-side validation asks for gnostic protobuf only; a
                // document without definitions makes it skip kinds it has no schema for,
                // and server-side field validation covers ours.
                let mut resp = Response::new(full(openapi::minimal_v2_protobuf(&self.config.title)));
                // As kube-openapi: the media type asked for is not one Go clients can parse back.
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                resp
            }
            Route::OpenApiV2 => {
                if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(self.docs.v2_etag.as_str())
                {
                    let mut resp = text(StatusCode::NOT_MODIFIED, String::new());
                    resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&self.docs.v2_etag).expect("etag"));
                    return resp;
                }
                let mut resp = Response::new(full(self.docs.v2.clone()));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&self.docs.v2_etag).expect("etag"));
                resp
            }
            Route::OpenApiV3(g, v) => {
                let Some((doc, hash)) = self.docs.v3.get(&(g.clone(), v.clone())) else {
                    return error_response(&ApiError::no_route());
                };
                if let Some(asked) = query.get("hash")
                    && asked != hash
                {
                    let mut resp = text(StatusCode::MOVED_PERMANENTLY, String::new());
                    let location = format!("{}?hash={hash}", uri.path());
                    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("location"));
                    return resp;
                }
                let mut resp = Response::new(full(doc.clone()));
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{hash}\"")).expect("etag"));
                h.insert(header::VARY, HeaderValue::from_static("Accept"));
                if query.get("hash").is_some() {
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
                    let stamp = expires.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
                    if let Ok(v) = HeaderValue::from_str(&stamp) {
                        h.insert(header::EXPIRES, v);
                    }
                }
                resp
            }
            _ => error_response(&ApiError::no_route()),
        }
    }
}

fn wants_protobuf_v2(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains(openapi::V2_PROTOBUF) && !accept.contains("application/json")
}
