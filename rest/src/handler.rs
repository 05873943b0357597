//! The request pipeline: route, authenticate, authorize, then serve discovery,
//! OpenAPI, health, metrics, or a resource verb through its storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};

use super::authn::{Authenticator, AuthnError, UserInfo};
use super::authz::{Attributes, Authorizer};
use super::body::{ResponseBody, full, stream};
use super::cache::{Key, rv_of};
use super::discovery;
use super::entry::Entry;
use super::metrics::ServerMetrics;
use super::openapi;
use super::patch;
use super::request::{FieldValidation, Query, ResourcePath, Route, WriteOptions, route, verb};
use super::resource::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult, GroupResource, success_status};
use super::storage::{Context, DeleteOptions, Storage};
use super::table::{Format, negotiate, table};
use super::watch::{self, Filter, Start, WatchParams};

/// The body of a request, boxed so extensions can forward it.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Serves requests the storages do not: called after authentication, and after
/// authorization for resource requests; gives the request back when it is not its own.
pub trait Extension: Send + Sync {
    /// Handles `req` for `user`, or returns it.
    fn intercept<'a>(
        &'a self,
        user: &'a UserInfo,
        req: Request<RequestBody>,
    ) -> super::storage::BoxFuture<'a, Result<Response<ResponseBody>, Request<RequestBody>>>;

    /// Groups to add to `/apis` (APIGroup documents).
    fn groups(&self) -> Vec<Value> {
        Vec::new()
    }

    /// Paths to add to the `/openapi/v3` root.
    fn openapi_v3_paths(&self) -> super::storage::BoxFuture<'_, Map<String, Value>> {
        Box::pin(async { Map::new() })
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Title of the OpenAPI documents.
    pub title: String,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
    /// Longest watch; a random share of it is used when the client sets none, as kube-apiserver does.
    pub max_watch_timeout: Duration,
    /// `/version` answer.
    pub version: Value,
    /// Open watches allowed per user (429 TooManyRequests beyond); 0: no limit.
    pub max_watches_per_user: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            title: "sks-apiserver".into(),
            max_body_bytes: 3 << 20,
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: Duration::from_secs(1800),
            version: json!({"major": "1", "minor": "33", "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")), "platform": "linux/amd64"}),
            max_watches_per_user: 0,
        }
    }
}

struct Docs {
    v2: Bytes,
    v2_etag: String,
    v3: BTreeMap<(String, String), (Bytes, String)>,
    schemas: Map<String, Value>,
}

/// The API server: storages plus the generic machinery around them.
pub struct ApiServer {
    storages: Vec<Arc<dyn Storage>>,
    defs: Vec<Arc<ResourceDef>>,
    authn: Arc<Authenticator>,
    authz: Arc<Authorizer>,
    /// The server's metrics.
    pub metrics: ServerMetrics,
    config: ServerConfig,
    docs: Docs,
    extension: Option<Arc<dyn Extension>>,
    watches: Arc<super::limits::WatchLimiter>,
}

/// Why `/readyz` fails, if it does.
type Readiness = Option<String>;

fn json_response(code: StatusCode, value: &Value, content_type: &'static str) -> Response<ResponseBody> {
    bytes_response(code, serde_json::to_vec(value).expect("responses serialise"), content_type)
}

fn bytes_response(code: StatusCode, bytes: impl Into<Bytes>, content_type: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// A list document around already encoded items.
fn list_json(api_version: &str, kind: &str, resource_version: &str, items: &[&Bytes]) -> Vec<u8> {
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

fn ok(value: &Value) -> Response<ResponseBody> {
    json_response(StatusCode::OK, value, "application/json")
}

fn error_response(e: &ApiError) -> Response<ResponseBody> {
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

fn text(code: StatusCode, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn simple(verb: &str, response: Response<ResponseBody>) -> Outcome {
    Outcome { verb: verb.into(), resource: String::new(), response }
}

/// Labels of a finished request for metrics.
struct Outcome {
    verb: String,
    resource: String,
    response: Response<ResponseBody>,
}

impl ApiServer {
    /// A server over `storages`, authenticating with `authn` and authorizing with `authz`.
    pub fn new(
        storages: Vec<Arc<dyn Storage>>,
        authn: Arc<Authenticator>,
        authz: Arc<Authorizer>,
        metrics: ServerMetrics,
        config: ServerConfig,
        extra_schemas: openapi::ExtraSchemas,
    ) -> Self {
        let defs: Vec<Arc<ResourceDef>> = storages.iter().map(|s| Arc::new(s.def().clone())).collect();
        let refs: Vec<&ResourceDef> = defs.iter().map(|d| d.as_ref()).collect();
        let v2 = openapi::v2_document(&refs, &extra_schemas, &config.title);
        let v2_bytes = Bytes::from(serde_json::to_vec(&v2).expect("documents serialise"));
        let v2_etag = format!("\"{}\"", &openapi::hash(&v2)[..32]);
        let mut v3 = BTreeMap::new();
        let mut schemas = Map::new();
        for (group, versions) in discovery::groups(&refs) {
            for version in versions {
                let mine: Vec<&ResourceDef> =
                    refs.iter().copied().filter(|d| d.group == group && d.version == version).collect();
                let doc = openapi::v3_document(&mine, &extra_schemas, &config.title);
                schemas.extend(openapi::schemas_of(&doc));
                let hash = openapi::hash(&doc);
                v3.insert(
                    (group.clone(), version),
                    (Bytes::from(serde_json::to_vec(&doc).expect("documents serialise")), hash),
                );
            }
        }
        let watches = super::limits::WatchLimiter::new(config.max_watches_per_user);
        ApiServer {
            storages,
            defs,
            authn,
            authz,
            metrics,
            watches,
            config,
            docs: Docs { v2: v2_bytes, v2_etag, v3, schemas },
            extension: None,
        }
    }

    /// Adds an extension consulted before the storages.
    pub fn with_extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extension = Some(extension);
        self
    }

    fn defs(&self) -> Vec<&ResourceDef> {
        self.defs.iter().map(|d| d.as_ref()).collect()
    }

    fn storage(&self, p: &ResourcePath) -> Option<(&Arc<dyn Storage>, &Arc<ResourceDef>)> {
        self.storages
            .iter()
            .zip(self.defs.iter())
            .find(|(_, d)| d.group == p.group && d.version == p.version && d.plural == p.resource)
    }

    fn readiness(&self) -> Readiness {
        let waiting: Vec<&str> = self.storages.iter().filter(|s| !s.ready()).map(|s| s.def().plural).collect();
        (!waiting.is_empty()).then(|| format!("caches not synced: {}", waiting.join(", ")))
    }

    /// Serves one request from a client whose TLS certificate chain is `peer`.
    pub async fn handle(
        &self,
        req: Request<RequestBody>,
        peer: Arc<Vec<CertificateDer<'static>>>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let outcome = self.dispatch(req, peer).await;
        let code = outcome.response.status().as_u16().to_string();
        self.metrics.requests.with_label_values(&[&outcome.verb, &outcome.resource, &code]).inc();
        self.metrics
            .latency
            .with_label_values(&[&outcome.verb, &outcome.resource])
            .observe(started.elapsed().as_secs_f64());
        outcome.response
    }

    async fn dispatch(&self, req: Request<RequestBody>, peer: Arc<Vec<CertificateDer<'static>>>) -> Outcome {
        let route = route(req.uri().path());
        let query = Query::parse(req.uri().query());
        if let Route::Health(probe) = &route {
            return simple("GET", self.health(probe, &query));
        }
        let user = match self.authn.authenticate(&peer, req.headers()).await {
            Ok(Some(user)) => user,
            Ok(None) => return simple("", error_response(&ApiError::unauthorized("Unauthorized"))),
            Err(AuthnError::Unauthorized(why)) => {
                tracing::debug!(reason = %why, "authentication failed");
                return simple("", error_response(&ApiError::unauthorized("Unauthorized")));
            }
            Err(AuthnError::Unavailable(why)) => {
                return simple(
                    "",
                    error_response(&ApiError::unavailable(format!("authentication unavailable: {why}"))),
                );
            }
        };
        if let Route::Resource(path) = &route {
            let watching = match query.flag("watch") {
                Ok(w) => w || path.watch_prefix,
                Err(e) => {
                    return Outcome { verb: "".into(), resource: path.resource.clone(), response: error_response(&e) };
                }
            };
            let verb = verb(req.method(), path, watching);
            let outcome = |response| Outcome { verb: verb.to_uppercase(), resource: path.resource.clone(), response };
            let attrs = Attributes {
                verb: verb.into(),
                group: path.group.clone(),
                version: path.version.clone(),
                resource: path.resource.clone(),
                subresource: path.subresource.clone().unwrap_or_default(),
                name: path.name.clone().unwrap_or_default(),
                namespace: path.namespace.clone().unwrap_or_default(),
                path: String::new(),
            };
            // Authorized by what the path names, whoever serves it (a storage or an extension).
            let gr = GroupResource { group: &path.group, resource: &path.resource };
            if let Err(e) = self.check(&user, &attrs, Some(gr)).await {
                return outcome(error_response(&e));
            }
            // Open watches are bounded per user; one is counted until its stream ends.
            let permit = match verb {
                "watch" => match self.watches.acquire(&user.name) {
                    Ok(permit) => permit,
                    Err(e) => return outcome(error_response(&e)),
                },
                _ => None,
            };
            let outcome = |response: Response<ResponseBody>| match permit {
                Some(p) => outcome(response.map(|body| super::limits::guarded(body, Box::new(p)))),
                None => outcome(response),
            };
            let req = match self.extend(&user, req).await {
                Ok(resp) => return outcome(resp),
                Err(req) => req,
            };
            let Some((storage, def)) = self.storage(path) else {
                return outcome(error_response(&ApiError::no_route()));
            };
            let (parts, body) = req.into_parts();
            let result = self.serve(storage, def, &parts.headers, path, &query, body, user, verb).await;
            return outcome(result.unwrap_or_else(|e| error_response(&e)));
        }
        let req = match self.extend(&user, req).await {
            Ok(resp) => return simple("GET", resp),
            Err(req) => req,
        };
        let (parts, _) = req.into_parts();
        match route {
            Route::Metrics => {
                let attrs = Attributes { verb: "get".into(), path: "/metrics".into(), ..Default::default() };
                if let Err(e) = self.check(&user, &attrs, None).await {
                    return simple("GET", error_response(&e));
                }
                simple("GET", text(StatusCode::OK, self.metrics.encode()))
            }
            Route::OpenApiV3Root => simple("GET", self.openapi_v3_root().await),
            // Discovery, OpenAPI and version are public to authenticated users, as
            // system:discovery and system:public-info-viewer grant them.
            other => simple("GET", self.non_resource(other, &parts.headers, &query, &parts.uri)),
        }
    }

    fn extend<'a>(
        &'a self,
        user: &'a UserInfo,
        req: Request<RequestBody>,
    ) -> super::storage::BoxFuture<'a, Result<Response<ResponseBody>, Request<RequestBody>>> {
        match &self.extension {
            Some(ext) => ext.intercept(user, req),
            None => Box::pin(std::future::ready(Err(req))),
        }
    }

    fn openapi_v3_root(&self) -> super::storage::BoxFuture<'_, Response<ResponseBody>> {
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

    fn health(&self, probe: &str, query: &Query) -> Response<ResponseBody> {
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

    fn non_resource(
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

    async fn check(&self, user: &UserInfo, attrs: &Attributes, gr: Option<GroupResource<'_>>) -> ApiResult<()> {
        let decision = self
            .authz
            .authorize(user, attrs)
            .await
            .map_err(|e| ApiError::unavailable(format!("authorization unavailable: {e}")))?;
        if decision.allowed {
            return Ok(());
        }
        Err(match gr {
            Some(gr) => ApiError::forbidden(gr, &attrs.name, &user.name, &attrs.verb, &decision.reason),
            None => ApiError::new(
                403,
                "Forbidden",
                format!("forbidden: User \"{}\" cannot {} path \"{}\"", user.name, attrs.verb, attrs.path),
            ),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        storage: &Arc<dyn Storage>,
        def: &Arc<ResourceDef>,
        headers: &HeaderMap,
        path: &ResourcePath,
        query: &Query,
        body: RequestBody,
        user: UserInfo,
        verb: &str,
    ) -> ApiResult<Response<ResponseBody>> {
        if def.namespaced != path.namespace.is_some() && !(def.namespaced && matches!(verb, "list" | "watch")) {
            return Err(ApiError::no_route());
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let format = negotiate(accept, query.get("includeObject"))?;
        let opts = WriteOptions::parse(query)?;
        let ctx = Context { user, namespace: path.namespace.clone(), dry_run: opts.dry_run };
        let key: Key = (path.namespace.clone().unwrap_or_default(), path.name.clone().unwrap_or_default());
        let gr = def.group_resource();
        let name = path.name.as_deref().unwrap_or("");
        if let Some(sub) = &path.subresource {
            let Some(subdef) = def.subresource(sub) else { return Err(ApiError::no_route()) };
            let verb_ok = subdef.verbs.contains(&verb);
            if !verb_ok {
                return Err(ApiError::method_not_allowed(verb, gr));
            }
            return match verb {
                "get" => Ok(ok(&storage.get_subresource(&ctx, name, sub).await?)),
                "update" => {
                    let obj = self.read_json(body, headers).await?;
                    Ok(ok(&storage.update_subresource(&ctx, name, sub, obj).await?))
                }
                "patch" => {
                    let kind = patch::kind(
                        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
                        def.strategic_merge,
                    )?;
                    let raw = self.read_body(body).await?;
                    let mut last = ApiError::internal("patch retries exhausted");
                    for _ in 0..5 {
                        let current = storage.get_subresource(&ctx, name, sub).await?;
                        let patched = patch::apply(kind, &current, &raw)?;
                        match storage.update_subresource(&ctx, name, sub, patched).await {
                            Err(e) if e.code == 409 && e.reason == "Conflict" => last = e,
                            other => return other.map(|v| ok(&v)),
                        }
                    }
                    Err(last)
                }
                "create" => {
                    let obj = self.read_json(body, headers).await?;
                    let created = storage.create_subresource(&ctx, name, sub, obj).await?;
                    Ok(json_response(StatusCode::CREATED, &created, "application/json"))
                }
                _ => Err(ApiError::method_not_allowed(verb, gr)),
            };
        }
        if !def.allows(verb) {
            return Err(ApiError::method_not_allowed(verb, gr));
        }
        match verb {
            "get" => {
                let entry = storage.cache().get_entry(&key).ok_or_else(|| ApiError::not_found(gr, name))?;
                Ok(render_with(def, &entry, format, StatusCode::OK))
            }
            "list" => self.list(storage, def, path, query, format),
            "watch" => self.watch(storage, def, path, query, format),
            "create" => {
                let (obj, warnings) = self.read_object(body, headers, def, &opts).await?;
                let obj = with_defaults(obj, def, path.namespace.as_deref())?;
                let created = storage.create(&ctx, obj).await?;
                let mut resp = render_with(def, &Entry::new(Arc::new(created)), format, StatusCode::CREATED);
                add_warnings(&mut resp, &warnings);
                Ok(resp)
            }
            "update" => {
                let (obj, warnings) = self.read_object(body, headers, def, &opts).await?;
                let obj = with_defaults(obj, def, path.namespace.as_deref())?;
                let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
                if body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                let updated = storage.update(&ctx, name, obj).await?;
                let mut resp = render_with(def, &Entry::new(Arc::new(updated)), format, StatusCode::OK);
                add_warnings(&mut resp, &warnings);
                Ok(resp)
            }
            "patch" => {
                let kind =
                    patch::kind(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), def.strategic_merge)?;
                let raw = self.read_body(body).await?;
                let mut last = ApiError::internal("patch retries exhausted");
                for _ in 0..5 {
                    let current = storage.cache().get(&key).ok_or_else(|| ApiError::not_found(gr, name))?;
                    let mut patched = patch::apply(kind, &current, &raw)?;
                    let unknown = self.unknown(def, &patched);
                    if opts.field_validation == FieldValidation::Strict && !unknown.is_empty() {
                        return Err(strict_error(&unknown));
                    }
                    if patched["metadata"]["name"] != current["metadata"]["name"] {
                        return Err(ApiError::bad_request("metadata.name cannot be changed by a patch"));
                    }
                    // A patch that names a resourceVersion asks for optimistic concurrency; else the current one applies.
                    let explicit_rv = patched["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"];
                    if !explicit_rv {
                        patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
                    }
                    match storage.update(&ctx, name, patched).await {
                        Err(e) if e.code == 409 && e.reason == "Conflict" && !explicit_rv => last = e,
                        Err(e) => return Err(e),
                        Ok(updated) => {
                            let mut resp = render_with(def, &Entry::new(Arc::new(updated)), format, StatusCode::OK);
                            add_warnings(&mut resp, &unknown_warnings(&unknown, opts.field_validation));
                            return Ok(resp);
                        }
                    }
                }
                Err(last)
            }
            "delete" => {
                let raw = self.read_body(body).await?;
                let mut del = DeleteOptions::default();
                if !raw.is_empty() {
                    let v: Value = serde_json::from_slice(&raw)
                        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
                    del.uid = v["preconditions"]["uid"].as_str().map(str::to_owned);
                    del.resource_version = v["preconditions"]["resourceVersion"].as_str().map(str::to_owned);
                    if v["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All")) {
                        return self.delete_with(storage, def, Context { dry_run: true, ..ctx }, name, del).await;
                    }
                }
                self.delete_with(storage, def, ctx, name, del).await
            }
            _ => Err(ApiError::method_not_allowed(verb, gr)),
        }
    }

    async fn delete_with(
        &self,
        storage: &Arc<dyn Storage>,
        def: &ResourceDef,
        ctx: Context,
        name: &str,
        del: DeleteOptions,
    ) -> ApiResult<Response<ResponseBody>> {
        let obj = storage.delete(&ctx, name, del).await?;
        if obj.get("kind").is_some() {
            return Ok(ok(&obj));
        }
        Ok(ok(&success_status(def.group_resource(), name, obj["metadata"]["uid"].as_str().unwrap_or(""))))
    }

    fn filter(&self, def: &ResourceDef, path: &ResourcePath, query: &Query) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), &def.field_selectors())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { namespace: path.namespace.clone(), labels, fields })
    }

    fn list(
        &self,
        storage: &Arc<dyn Storage>,
        def: &ResourceDef,
        path: &ResourcePath,
        query: &Query,
        format: Format,
    ) -> ApiResult<Response<ResponseBody>> {
        if query.get("sendInitialEvents").is_some() {
            return Err(ApiError::new(422, "Invalid", "sendInitialEvents is forbidden for list"));
        }
        if query.get("continue").is_some_and(|c| !c.is_empty()) {
            return Err(ApiError::expired(
                "the provided continue parameter is too old to display a consistent list result",
            ));
        }
        let filter = self.filter(def, path, query)?;
        let (entries, rv) = match (filter.fields.exact("metadata.name"), &path.namespace) {
            // `metadata.name=x` (kubectl wait, delete --wait) needs one lookup, not a scan.
            (Some(name), ns) => {
                let key = (ns.clone().unwrap_or_default(), name.to_owned());
                (storage.cache().get_entry(&key).into_iter().collect(), storage.cache().current_rv())
            }
            _ => storage.cache().snapshot_entries(),
        };
        let all = filter.selects_all();
        let items: Vec<&Entry> = entries.iter().filter(|e| all || filter.matches(&e.object)).collect();
        let rv = rv.to_string();
        // Every item's encoding comes from its memo: only objects changed since the last read are serialized.
        Ok(match format {
            Format::Table(include) => {
                bytes_response(StatusCode::OK, table(def, &items, &rv, include, true), TABLE_CONTENT_TYPE)
            }
            Format::Metadata => {
                let encoded: Vec<&Bytes> = items.iter().map(|e| e.metadata_json()).collect();
                let body = list_json("meta.k8s.io/v1", "PartialObjectMetadataList", &rv, &encoded);
                bytes_response(StatusCode::OK, body, "application/json")
            }
            Format::Json => {
                let encoded: Vec<&Bytes> = items.iter().map(|e| e.json()).collect();
                let body = list_json(&def.api_version(), &def.list_kind(), &rv, &encoded);
                bytes_response(StatusCode::OK, body, "application/json")
            }
        })
    }

    fn watch(
        &self,
        storage: &Arc<dyn Storage>,
        def: &Arc<ResourceDef>,
        path: &ResourcePath,
        query: &Query,
        format: Format,
    ) -> ApiResult<Response<ResponseBody>> {
        if query.get("sendInitialEvents").is_some() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
            ));
        }
        let filter = self.filter(def, path, query)?;
        let start = match query.get("resourceVersion") {
            None | Some("") | Some("0") => Start::Now,
            Some(rv) => match rv.parse::<u64>() {
                Ok(n) => Start::After(n),
                // Not one of ours at all: the client must relist.
                Err(_) => Start::After(0),
            },
        };
        let timeout = match query.get("timeoutSeconds").map(str::parse::<u64>) {
            Some(Ok(s)) => Duration::from_secs(s).min(self.config.max_watch_timeout),
            Some(Err(_)) => return Err(ApiError::bad_request("timeoutSeconds: must be a non-negative integer")),
            None => {
                // Spread reconnections as kube-apiserver does: between the max and twice... of half of it.
                let half = self.config.max_watch_timeout / 2;
                half + half.mul_f64(rand::random::<f64>())
            }
        };
        let params = WatchParams {
            start,
            filter,
            bookmarks: query.flag("allowWatchBookmarks")?,
            timeout,
            bookmark_interval: self.config.bookmark_interval,
            format,
        };
        let rx = watch::start(storage.cache().clone(), def.clone(), params);
        let gauge = self.metrics.watches.with_label_values(&[def.plural]);
        gauge.inc();
        struct Open(prometheus::IntGauge);
        impl Drop for Open {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let mut resp = Response::new(stream(rx, Some(Box::new(Open(gauge)))));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
        Ok(resp)
    }

    async fn read_body(&self, mut body: RequestBody) -> ApiResult<Bytes> {
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.config.max_body_bytes {
                    // Read the rest (within bounds) so the client, still sending, gets the 413, not a reset.
                    super::limits::drain(body).await;
                    return Err(ApiError::too_large(self.config.max_body_bytes));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    }

    async fn read_json(&self, body: RequestBody, headers: &HeaderMap) -> ApiResult<Value> {
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
    async fn read_object(
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

fn wants_protobuf_v2(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains(openapi::V2_PROTOBUF) && !accept.contains("application/json")
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

fn add_warnings(resp: &mut Response<ResponseBody>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
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

fn render_with(def: &ResourceDef, entry: &Entry, format: Format, code: StatusCode) -> Response<ResponseBody> {
    match format {
        Format::Json => bytes_response(code, entry.json().clone(), "application/json"),
        Format::Metadata => bytes_response(code, entry.metadata_json().clone(), "application/json"),
        Format::Table(include) => {
            let rv = rv_of(&entry.object).to_string();
            bytes_response(code, table(def, &[entry], &rv, include, true), TABLE_CONTENT_TYPE)
        }
    }
}
