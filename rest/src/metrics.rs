//! The server's Prometheus metrics.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Request counters, latency and open watches.
#[derive(Clone)]
pub struct ServerMetrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// `apiserver_request_total{verb,group,version,resource,subresource,scope,code}`, as kube-apiserver's.
    pub requests: IntCounterVec,
    /// `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope}` (watches: until the stream starts).
    pub latency: HistogramVec,
    /// `apiserver_open_watches{resource}`.
    pub watches: IntGaugeVec,
}

impl ServerMetrics {
    /// Creates the metrics in `registry`.
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("apiserver_request_total", "Requests by verb, resource, subresource and HTTP status"),
            &["verb", "group", "version", "resource", "subresource", "scope", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("apiserver_request_duration_seconds", "Request latency")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["verb", "group", "version", "resource", "subresource", "scope"],
        )?;
        let watches = IntGaugeVec::new(Opts::new("apiserver_open_watches", "Open watch streams"), &["resource"])?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(watches.clone()))?;
        Ok(ServerMetrics { registry, requests, latency, watches })
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}
