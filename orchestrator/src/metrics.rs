//! Prometheus metrics of orchestrator calls; one set per client, registered
//! into the caller's registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and latency of orchestrator calls, labelled by operation id
/// (the OpenAPI `operationId`, e.g. `get-instance`).
#[derive(Clone)]
pub struct ClientMetrics {
    /// `orchestrator_requests_total{operation,code}`; code is the HTTP status or `error`.
    pub requests: IntCounterVec,
    /// `orchestrator_request_duration_seconds{operation}`, per attempt.
    pub latency: HistogramVec,
    /// `orchestrator_retries_total{operation,reason}`.
    pub retries: IntCounterVec,
}

impl ClientMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("orchestrator_requests_total", "Orchestrator API requests by operation and HTTP status"),
            &["operation", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("orchestrator_request_duration_seconds", "Orchestrator API request latency")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["operation"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new("orchestrator_retries_total", "Orchestrator API retries by operation and cause"),
            &["operation", "reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        Ok(ClientMetrics { requests, latency, retries })
    }
}
