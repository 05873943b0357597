//! API aggregation as kube-apiserver does it: requests for a group an
//! APIService names are proxied to its Service with the front-proxy client
//! certificate and `X-Remote-*` identity headers; the client's own
//! credentials and identity headers never pass.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value, json};
use sks_rest::authn::UserInfo;
use sks_rest::body::{ResponseBody, full, stream};
use sks_rest::cache::{ObjectCache, rv_of};
use sks_rest::handler::{Extension, RequestBody};
use sks_rest::status::ApiError;
use sks_rest::storage::BoxFuture;

/// Where an APIService's requests go.
#[derive(Clone)]
pub struct Target {
    /// `https://<service>.<namespace>.svc:<port>`.
    pub base: String,
    /// A client verifying the service's name against the caBundle and presenting the front-proxy certificate.
    pub client: reqwest::Client,
}

impl Target {
    /// A GET of `path` made by the aggregator itself as `user` in `group`, bounded like its own checks.
    fn get_as(&self, path: &str, user: &str, group: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .header("X-Remote-User", user)
            .header("X-Remote-Group", group)
            .timeout(Duration::from_secs(5))
    }
}

/// Merged OpenAPI v3 root paths: when, for which APIServices state, and what.
type MergedRoots = (Instant, u64, Map<String, Value>);

/// Proxies aggregated groups; shares the stand-in's caches.
pub struct Aggregator {
    apiservices: Arc<ObjectCache>,
    services: Arc<ObjectCache>,
    endpoints: Arc<ObjectCache>,
    /// PEM of the front-proxy client certificate and key.
    identity_pem: String,
    clients: Mutex<BTreeMap<String, reqwest::Client>>,
    /// The merged roots, with when and for which APIServices state they were fetched.
    openapi: tokio::sync::Mutex<Option<MergedRoots>>,
}

/// Headers a client may not pass through: credentials and identity.
fn dropped(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "host"
        || n == "connection"
        || n.starts_with("x-remote-")
        || n.starts_with("impersonate-")
        || n == "content-length"
        || n == "transfer-encoding"
}

fn unavailable(message: String) -> Response<ResponseBody> {
    let e = ApiError::unavailable(message);
    let mut resp = Response::new(full(serde_json::to_vec(&e.to_status()).expect("status")));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl Aggregator {
    /// An aggregator over the stand-in's APIServices, Services and Endpoints.
    pub fn new(
        apiservices: Arc<ObjectCache>,
        services: Arc<ObjectCache>,
        endpoints: Arc<ObjectCache>,
        identity_pem: String,
    ) -> Self {
        Aggregator {
            apiservices,
            services,
            endpoints,
            identity_pem,
            clients: Mutex::new(BTreeMap::new()),
            openapi: tokio::sync::Mutex::new(None),
        }
    }

    /// The APIService named `<version>.<group>`, if it is served remotely.
    fn apiservice(&self, group: &str, version: &str) -> Option<Arc<Value>> {
        self.apiservices
            .get(&(String::new(), format!("{version}.{group}")))
            .filter(|a| a["spec"]["service"].is_object())
    }

    /// Resolves the Service of an APIService to an address and a client.
    pub fn target(&self, apiservice: &Value) -> Result<Target, String> {
        let svc = &apiservice["spec"]["service"];
        let (ns, name) = (svc["namespace"].as_str().unwrap_or("default"), svc["name"].as_str().unwrap_or(""));
        let port = svc["port"].as_i64().unwrap_or(443);
        let service = self
            .services
            .get(&(ns.to_owned(), name.to_owned()))
            .ok_or_else(|| format!("service {ns}/{name} not found"))?;
        let addr: SocketAddr = if service["spec"]["type"] == "ExternalName" {
            let host = service["spec"]["externalName"].as_str().unwrap_or("");
            (host, port as u16)
                .to_socket_addrs()
                .map_err(|e| format!("resolving {host}: {e}"))?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("{host} has no IPv4 address"))?
        } else {
            let ep = self
                .endpoints
                .get(&(ns.to_owned(), name.to_owned()))
                .ok_or_else(|| format!("endpoints for service {ns}/{name} not found"))?;
            let subset = &ep["subsets"][0];
            let ip = subset["addresses"][0]["ip"]
                .as_str()
                .ok_or_else(|| format!("service {ns}/{name} has no ready endpoints"))?;
            let target_port = subset["ports"][0]["port"].as_i64().unwrap_or(port);
            format!("{ip}:{target_port}").parse().map_err(|e| format!("endpoint address: {e}"))?
        };
        // The aggregator checks the certificate for the service's cluster DNS name, whatever address it dials.
        let host = format!("{name}.{ns}.svc");
        let key = format!(
            "{}/{}/{addr}",
            apiservice["metadata"]["name"].as_str().unwrap_or(""),
            apiservice["metadata"]["resourceVersion"].as_str().unwrap_or("")
        );
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(Target { base: format!("https://{host}:{}", addr.port()), client: c.clone() });
        }
        let mut builder =
            reqwest::Client::builder().resolve(&host, addr).connect_timeout(Duration::from_secs(5)).identity(
                reqwest::Identity::from_pem(self.identity_pem.as_bytes())
                    .map_err(|e| format!("front-proxy identity: {e}"))?,
            );
        builder = match apiservice["spec"]["caBundle"].as_str() {
            Some(b64) if !b64.is_empty() => {
                use base64::Engine as _;
                let pem =
                    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("caBundle: {e}"))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("caBundle: {e}"))?;
                builder.tls_certs_only(certs)
            }
            _ if apiservice["spec"]["insecureSkipTLSVerify"] == json!(true) => {
                builder.tls_danger_accept_invalid_certs(true)
            }
            _ => builder,
        };
        let client = builder.build().map_err(|e| format!("building the proxy client: {e}"))?;
        clients.insert(key, client.clone());
        Ok(Target { base: format!("https://{host}:{}", addr.port()), client })
    }

    async fn proxy(&self, user: &UserInfo, apiservice: &Value, req: Request<RequestBody>) -> Response<ResponseBody> {
        let target = match self.target(apiservice) {
            Ok(t) => t,
            Err(e) => return unavailable(format!("service unavailable: {e}")),
        };
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return unavailable(format!("reading the request body: {e}")),
        };
        let path = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
        let mut out = target.client.request(parts.method.clone(), format!("{}{path}", target.base));
        for (name, value) in &parts.headers {
            if !dropped(name.as_str()) {
                out = out.header(name, value);
            }
        }
        out = out.header("X-Remote-User", &user.name);
        for g in &user.groups {
            out = out.header("X-Remote-Group", g);
        }
        for (key, values) in &user.extra {
            let escaped = url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>();
            for v in values {
                out = out.header(format!("X-Remote-Extra-{escaped}"), v);
            }
        }
        if let Some(uid) = &user.uid {
            out = out.header("X-Remote-Uid", uid);
        }
        if !body.is_empty() {
            out = out.body(body);
        }
        let resp = match out.send().await {
            Ok(r) => r,
            Err(e) => return unavailable(format!("error trying to reach service: {e}")),
        };
        let mut builder = Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
                builder = builder.header(name, value);
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let mut chunks = resp.bytes_stream();
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = chunks.next().await {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        builder.body(stream(rx, None)).unwrap_or_else(|e| unavailable(format!("proxy response: {e}")))
    }

    /// Asks an APIService's server for its `/apis/<g>/<v>` as the availability check does.
    pub async fn check(&self, apiservice: &Value) -> Result<(), (String, String)> {
        let group = apiservice["spec"]["group"].as_str().unwrap_or("");
        let version = apiservice["spec"]["version"].as_str().unwrap_or("");
        let target = self.target(apiservice).map_err(|e| ("ServiceNotFound".to_owned(), e))?;
        let resp = target
            .get_as(&format!("/apis/{group}/{version}"), "system:kube-aggregator", "system:masters")
            .send()
            .await
            .map_err(|e| {
                ("FailedDiscoveryCheck".to_owned(), format!("failing or missing response from {}: {e}", target.base))
            })?;
        if !resp.status().is_success() {
            return Err(("FailedDiscoveryCheck".into(), format!("bad status from {}: {}", target.base, resp.status())));
        }
        Ok(())
    }

    fn remote_groups(&self) -> BTreeMap<String, Vec<(i64, i64, String)>> {
        let mut groups: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
        for a in self.apiservices.snapshot().0 {
            if !a["spec"]["service"].is_object() {
                continue;
            }
            let g = a["spec"]["group"].as_str().unwrap_or("").to_owned();
            let v = a["spec"]["version"].as_str().unwrap_or("").to_owned();
            let prio = (
                a["spec"]["groupPriorityMinimum"].as_i64().unwrap_or(0),
                a["spec"]["versionPriority"].as_i64().unwrap_or(0),
            );
            groups.entry(g).or_default().push((prio.0, prio.1, v));
        }
        for vs in groups.values_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(v.1));
        }
        groups
    }

    fn group_doc(name: &str, versions: &[(i64, i64, String)]) -> Value {
        let vs: Vec<Value> =
            versions.iter().map(|(_, _, v)| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
        json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    }
}

impl Extension for Aggregator {
    fn intercept<'a>(
        &'a self,
        user: &'a UserInfo,
        req: Request<RequestBody>,
    ) -> BoxFuture<'a, Result<Response<ResponseBody>, Request<RequestBody>>> {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let (group, version) = match parts.as_slice() {
                ["apis", g] => {
                    let groups = self.remote_groups();
                    return match groups.get(*g) {
                        Some(vs) => {
                            let mut doc = Self::group_doc(g, vs);
                            doc["kind"] = json!("APIGroup");
                            doc["apiVersion"] = json!("v1");
                            let mut resp = Response::new(full(serde_json::to_vec(&doc).expect("json")));
                            resp.headers_mut()
                                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                            Ok(resp)
                        }
                        None => Err(req),
                    };
                }
                ["apis", g, v, ..] => ((*g).to_owned(), (*v).to_owned()),
                ["openapi", "v3", "apis", g, v] => ((*g).to_owned(), (*v).to_owned()),
                _ => return Err(req),
            };
            match self.apiservice(&group, &version) {
                Some(a) => Ok(self.proxy(user, &a, req).await),
                None => Err(req),
            }
        })
    }

    fn groups(&self) -> Vec<Value> {
        let mut groups: Vec<(i64, Value)> = self
            .remote_groups()
            .iter()
            .map(|(g, vs)| (vs.iter().map(|v| v.0).max().unwrap_or(0), Self::group_doc(g, vs)))
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.0));
        groups.into_iter().map(|(_, g)| g).collect()
    }

    fn openapi_v3_paths(&self) -> BoxFuture<'_, Map<String, Value>> {
        Box::pin(async move {
            let mut cached = self.openapi.lock().await;
            // A new or changed APIService invalidates at once; servers' own changes within 10 s.
            let state = self.apiservices.snapshot().0.iter().map(|a| rv_of(a)).max().unwrap_or(0);
            if let Some((at, seen, paths)) = cached.as_ref()
                && at.elapsed() < Duration::from_secs(10)
                && *seen == state
            {
                return paths.clone();
            }
            let mut paths = Map::new();
            for a in self.apiservices.snapshot().0 {
                if !a["spec"]["service"].is_object() {
                    continue;
                }
                let target = match self.target(&a) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "fetching an aggregated OpenAPI root: no target");
                        continue;
                    }
                };
                let resp = target.get_as("/openapi/v3", "system:aggregator", "system:authenticated").send().await;
                let doc = match resp {
                    Ok(r) => r.json::<Value>().await,
                    Err(e) => Err(e),
                };
                let doc = match doc {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "fetching an aggregated OpenAPI root failed");
                        continue;
                    }
                };
                let own = format!(
                    "apis/{}/{}",
                    a["spec"]["group"].as_str().unwrap_or(""),
                    a["spec"]["version"].as_str().unwrap_or("")
                );
                if let Some(p) = doc["paths"].get(&own) {
                    paths.insert(own, p.clone());
                }
            }
            *cached = Some((Instant::now(), state, paths.clone()));
            paths
        })
    }
}
