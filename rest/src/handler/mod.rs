//! The request pipeline: route, authenticate, authorize, then serve discovery,
//! OpenAPI, health, metrics, or a resource verb through its storage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};

use self::nonresource::Docs;
use self::respond::{error_response, text};
use super::authn::{Authenticator, AuthnError, UserInfo};
use super::authz::{Attributes, Authorizer};
use super::body::ResponseBody;
use super::cache::Key;
use super::metrics::ServerMetrics;
use super::openapi;
use super::request::{Query, ResourcePath, Route, WriteOptions, route, verb};
use super::resource::ResourceDef;
use super::status::{ApiError, ApiResult, GroupResource};
use super::storage::{Context, Storage, verbs_of};
use super::table::{Format, negotiate};

mod nonresource;
mod read;
mod respond;
mod write;

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

fn simple(verb: &str, response: Response<ResponseBody>) -> Outcome {
    Outcome { verb: verb.into(), target: None, response }
}

/// Labels of a finished request for metrics.
struct Outcome {
    verb: String,
    /// The resource asked for, when it was a resource request.
    target: Option<ResourcePath>,
    response: Response<ResponseBody>,
}

/// kube-apiserver's `verb` label: the HTTP method, except LIST, WATCH and
/// APPLY (a server-side apply patch), which it tells apart.
fn metric_verb(verb: &str, content_type: Option<&str>) -> String {
    match verb {
        "create" => "POST".into(),
        "update" => "PUT".into(),
        "patch" if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) => "APPLY".into(),
        other => other.to_uppercase(),
    }
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
        let defs: Vec<Arc<ResourceDef>> = storages
            .iter()
            .map(|s| {
                let mut def = s.def().clone();
                def.verbs = verbs_of(s.as_ref());
                Arc::new(def)
            })
            .collect();
        let refs: Vec<&ResourceDef> = defs.iter().map(std::convert::AsRef::as_ref).collect();
        let docs = Docs::build(&refs, &extra_schemas, &config.title);
        let watches = super::limits::WatchLimiter::new(config.max_watches_per_user);
        ApiServer { storages, defs, authn, authz, metrics, watches, config, docs, extension: None }
    }

    /// Adds an extension consulted before the storages.
    pub fn with_extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extension = Some(extension);
        self
    }

    fn defs(&self) -> Vec<&ResourceDef> {
        self.defs.iter().map(std::convert::AsRef::as_ref).collect()
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
        let (group, version, resource, subresource, scope) = match &outcome.target {
            Some(p) => {
                let scope = match (&p.name, &p.namespace) {
                    (Some(_), _) => "resource",
                    (None, Some(_)) => "namespace",
                    (None, None) => "cluster",
                };
                (
                    p.group.as_str(),
                    p.version.as_str(),
                    p.resource.as_str(),
                    p.subresource.as_deref().unwrap_or(""),
                    scope,
                )
            }
            None => ("", "", "", "", ""),
        };
        let labels = [outcome.verb.as_str(), group, version, resource, subresource, scope, &code];
        self.metrics.requests.with_label_values(&labels).inc();
        self.metrics
            .latency
            .with_label_values(&[&outcome.verb, group, version, resource, subresource, scope])
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
                    return Outcome { verb: "".into(), target: Some(path.clone()), response: error_response(&e) };
                }
            };
            let verb = verb(req.method(), path, watching);
            let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let metric_verb = metric_verb(verb, content_type);
            let outcome = |response| Outcome { verb: metric_verb.clone(), target: Some(path.clone()), response };
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
            let headers = &parts.headers;
            let result = async {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                let format = negotiate(accept, query.get("includeObject"))?;
                let opts = WriteOptions::parse(&query)?;
                let ctx = Context { user, namespace: path.namespace.clone(), dry_run: opts.dry_run };
                let call = Call { storage, def, headers, path, query: &query, ctx: &ctx, format, opts: &opts };
                self.serve(call, verb, body).await
            }
            .await;
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

    /// Serves one resource request by its verb.
    async fn serve(&self, call: Call<'_>, verb: &str, body: RequestBody) -> ApiResult<Response<ResponseBody>> {
        let def = call.def;
        if def.namespaced != call.path.namespace.is_some() && !(def.namespaced && matches!(verb, "list" | "watch")) {
            return Err(ApiError::no_route());
        }
        if let Some(sub) = call.path.subresource.as_deref() {
            let declared = def.subresource(sub).ok_or_else(ApiError::no_route)?;
            if !declared.verbs.contains(&verb) {
                return Err(call.not_allowed(verb));
            }
            return match verb {
                "get" => self.get_subresource(&call, sub).await,
                "update" | "patch" => self.change(&call, Some(sub), verb, body).await,
                "create" => self.create_subresource(&call, sub, body).await,
                _ => Err(call.not_allowed(verb)),
            };
        }
        if !def.allows(verb) {
            return Err(call.not_allowed(verb));
        }
        match verb {
            "get" => self.get(&call),
            "list" => self.list(&call),
            "watch" => self.watch(&call),
            "create" => self.create(&call, body).await,
            "update" | "patch" => self.change(&call, None, verb, body).await,
            "delete" => self.delete(&call, body).await,
            _ => Err(call.not_allowed(verb)),
        }
    }
}

/// One resource request, as the verb handlers see it.
#[derive(Clone, Copy)]
struct Call<'a> {
    storage: &'a Arc<dyn Storage>,
    def: &'a Arc<ResourceDef>,
    headers: &'a HeaderMap,
    path: &'a ResourcePath,
    query: &'a Query,
    ctx: &'a Context,
    format: Format,
    opts: &'a WriteOptions,
}

impl Call<'_> {
    fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    fn key(&self) -> Key {
        (self.path.namespace.clone().unwrap_or_default(), self.name().to_owned())
    }

    fn not_allowed(&self, verb: &str) -> ApiError {
        ApiError::method_not_allowed(verb, self.def.group_resource())
    }
}
