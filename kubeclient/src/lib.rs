//! The Kubernetes client of sks-ccm and sks-apiserver: built from a kubeconfig
//! (or the in-cluster service account), with every request it sends counted
//! by verb, resource, subresource and answer. On a real cluster the API server
//! is the bottleneck, so what a controller costs is its requests; these
//! counters are what `sks-bench` reports per object, on the stand-in and on a
//! real kube-apiserver alike (whose own metrics do not say who asked).
//!
//! There is no client-side rate limit (kube-rs has none, unlike client-go's
//! default 5 QPS, or 20 in the cloud-provider framework): a burst is limited by
//! kube-apiserver's API Priority and Fairness, which queues or answers 429, and
//! by each controller's concurrency.
//!
//! [`events`] publishes `events.k8s.io/v1` Events through such a client.

pub mod events;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use sks_rest::request::{Route, route, verb};

/// The client's metrics.
#[derive(Clone)]
pub struct ClientMetrics {
    /// `kube_client_requests_total{verb,resource,subresource,code}`: `code` is the HTTP status, or `error`.
    pub requests: IntCounterVec,
    /// `kube_client_request_duration_seconds{verb,resource}`: until the answer's head (a watch: until it opens).
    pub latency: HistogramVec,
}

impl ClientMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("kube_client_requests_total", "Requests sent to the Kubernetes API by verb, resource and answer"),
            &["verb", "resource", "subresource", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("kube_client_request_duration_seconds", "Kubernetes API request latency")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["verb", "resource"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(ClientMetrics { requests, latency })
    }
}

/// A client from `kubeconfig`, or from the environment (in-cluster service
/// account, `KUBECONFIG`, `~/.kube/config`) when there is none.
pub async fn connect(kubeconfig: Option<&Path>, metrics: Option<ClientMetrics>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).with_context(|| format!("reading {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match metrics {
        Some(metrics) => builder.with_layer(&Counting(metrics)).build(),
        None => builder.build(),
    })
}

/// What a request is, as the API server's authorizer sees it: verb, resource, subresource.
pub fn describe(method: &http::Method, path_and_query: &str) -> (&'static str, String, String) {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    match route(path) {
        Route::Resource(p) => {
            let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
            let verb = verb(method, &p, watch);
            (verb, p.resource, p.subresource.unwrap_or_default())
        }
        _ => (method_verb(method), String::new(), String::new()),
    }
}

fn method_verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// The layer counting every request.
#[derive(Clone)]
struct Counting(ClientMetrics);

impl<S> tower_layer::Layer<S> for Counting {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted { inner, metrics: self.0.clone() }
    }
}

/// A service whose requests are counted.
struct Counted<S> {
    inner: S,
    metrics: ClientMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for Counted<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path_and_query().map_or("/", http::uri::PathAndQuery::as_str).to_owned();
        let (verb, resource, subresource) = describe(req.method(), &path);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(resp) => resp.status().as_str().to_owned(),
                Err(_) => "error".to_owned(),
            };
            metrics.requests.with_label_values(&[verb, &resource, &subresource, &code]).inc();
            metrics.latency.with_label_values(&[verb, &resource]).observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_described_as_the_authorizer_sees_them() {
        let get = http::Method::GET;
        let cases = [
            (&get, "/api/v1/nodes?resourceVersion=0", ("list", "nodes", "")),
            (&get, "/api/v1/nodes?watch=true&resourceVersion=5", ("watch", "nodes", "")),
            (&get, "/api/v1/nodes/n1", ("get", "nodes", "")),
            (&http::Method::PATCH, "/api/v1/nodes/n1/status", ("patch", "nodes", "status")),
            (
                &http::Method::PUT,
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
                ("update", "certificatesigningrequests", "approval"),
            ),
            (&http::Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events", ("create", "events", "")),
            (&http::Method::DELETE, "/api/v1/nodes/n1", ("delete", "nodes", "")),
            (&get, "/version", ("get", "", "")),
        ];
        for (method, path, (v, r, s)) in cases {
            assert_eq!(describe(method, path), (v, r.to_owned(), s.to_owned()), "{method} {path}");
        }
    }
}
