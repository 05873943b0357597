//! What a request asks for: the path parsed as kube-apiserver's RequestInfo
//! does, the verb, and the query options of reads and writes.

use super::status::{ApiError, ApiResult};

/// A request for a resource (or one of its objects or subresources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Resource plural.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
    /// Whether the deprecated `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

/// What a path designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`, `/livez`, `/readyz` (and `/<probe>/<check>`).
    Health(String),
    /// `/metrics`.
    Metrics,
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<g>`.
    Group(String),
    /// `/apis/<g>/<v>` or `/api/<v>`.
    Resources(String, String),
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Root,
    /// `/openapi/v3/apis/<g>/<v>` or `/openapi/v3/api/<v>`.
    OpenApiV3(String, String),
    /// A resource request.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

/// Subresources of a namespace object, which are not resources in the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses a request path.
pub fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => Route::Health(parts[0].to_owned()),
        ["metrics"] => Route::Metrics,
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group((*g).to_owned()),
        ["api", v] => Route::Resources(String::new(), (*v).to_owned()),
        ["apis", g, v] => Route::Resources((*g).to_owned(), (*v).to_owned()),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3((*g).to_owned(), (*v).to_owned()),
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), (*v).to_owned()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut parts = rest;
    let mut watch_prefix = false;
    if let ["watch", tail @ ..] = parts {
        watch_prefix = true;
        parts = tail;
    }
    let mut namespace = None;
    if let ["namespaces", ns, tail @ ..] = parts
        && let Some(next) = tail.first()
        && !NAMESPACE_SUBRESOURCES.contains(next)
    {
        namespace = Some((*ns).to_owned());
        parts = tail;
    }
    let (resource, name, subresource) = match parts {
        [r] => (r, None, None),
        [r, n] => (r, Some(n), None),
        [r, n, s] => (r, Some(n), Some(s)),
        _ => return Route::Unknown,
    };
    Route::Resource(ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        resource: (*resource).to_owned(),
        name: name.map(|n| (*n).to_owned()),
        subresource: subresource.map(|s| (*s).to_owned()),
        watch_prefix,
    })
}

/// The authorization verb of a resource request.
pub fn verb(method: &http::Method, path: &ResourcePath, watch: bool) -> &'static str {
    let one = path.name.is_some();
    match *method {
        http::Method::GET | http::Method::HEAD if watch || path.watch_prefix => "watch",
        http::Method::GET | http::Method::HEAD if one => "get",
        http::Method::GET | http::Method::HEAD => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if one => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// Query parameters as decoded pairs.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Decodes a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Query(url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The last value of `name` (kube-apiserver takes the last).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`, `1`); absent is false.
    pub fn flag(&self, name: &str) -> ApiResult<bool> {
        match self.get(name) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("{name}: invalid boolean {other:?}"))),
        }
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// How to treat unknown or duplicate fields in a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request.
    Strict,
    /// Accept it with a warning.
    Warn,
    /// Drop them silently.
    Ignore,
}

/// Options of create, update, patch and delete.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: validate, change nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
}

impl WriteOptions {
    /// Reads `dryRun` and `fieldValidation`.
    pub fn parse(q: &Query) -> ApiResult<Self> {
        let mut dry_run = false;
        for v in q.all("dryRun") {
            match v {
                "All" => dry_run = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                    )));
                }
            }
        }
        let field_validation = match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        Ok(WriteOptions { dry_run, field_validation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes_like_request_info() {
        let r = res("/apis/sks.exoscale.net/v1alpha1/nodepools/workers/scale");
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("sks.exoscale.net", "nodepools", Some("workers"), Some("scale"))
        );
        let r = res("/api/v1/namespaces/kube-system/configmaps/x");
        assert_eq!(
            (r.namespace.as_deref(), r.resource.as_str(), r.name.as_deref()),
            (Some("kube-system"), "configmaps", Some("x"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.namespace, r.resource.as_str(), r.name.as_deref()), (None, "namespaces", Some("kube-system")));
        let r = res("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let r = res("/apis/sks.exoscale.net/v1alpha1/watch/nodepools");
        assert!(r.watch_prefix);
        assert_eq!(
            route("/apis/sks.exoscale.net/v1alpha1"),
            Route::Resources("sks.exoscale.net".into(), "v1alpha1".into())
        );
        assert_eq!(
            route("/openapi/v3/apis/sks.exoscale.net/v1alpha1"),
            Route::OpenApiV3("sks.exoscale.net".into(), "v1alpha1".into())
        );
        assert_eq!(route("/readyz/ping"), Route::Health("readyz".into()));
        assert_eq!(route("/apis/g/v/a/b/c/d"), Route::Unknown);
    }

    #[test]
    fn verbs() {
        let one = res("/apis/g/v/things/x");
        let all = res("/apis/g/v/things");
        assert_eq!(verb(&http::Method::GET, &one, false), "get");
        assert_eq!(verb(&http::Method::GET, &all, false), "list");
        assert_eq!(verb(&http::Method::GET, &all, true), "watch");
        assert_eq!(verb(&http::Method::DELETE, &all, false), "deletecollection");
    }

    #[test]
    fn write_options() {
        assert!(WriteOptions::parse(&Query::parse(Some("dryRun=All"))).unwrap().dry_run);
        assert_eq!(WriteOptions::parse(&Query::parse(Some("dryRun=Yes"))).unwrap_err().code, 400);
        assert_eq!(
            WriteOptions::parse(&Query::parse(Some("fieldValidation=Strict"))).unwrap().field_validation,
            FieldValidation::Strict
        );
    }
}
