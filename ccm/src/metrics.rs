//! The controllers' metrics (`ccm_*`), labelled by controller: `node`, `csr`
//! and `service`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Per-controller metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `ccm_reconciles_total{controller,result}`.
    pub reconciles: IntCounterVec,
    /// `ccm_reconcile_duration_seconds{controller}`.
    pub latency: HistogramVec,
    /// `ccm_node_initialization_delay_seconds`: from Node creation to initialized.
    pub init_delay: prometheus::Histogram,
    /// `ccm_queue_depth{controller}`: objects changed and not yet picked up.
    pub queue_depth: IntGaugeVec,
}

impl Metrics {
    /// Registers the metrics.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounterVec::new(
            Opts::new("ccm_reconciles_total", "Reconciles by controller and result"),
            &["controller", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("ccm_reconcile_duration_seconds", "Reconcile latency"),
            &["controller"],
        )?;
        let init_delay = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ccm_node_initialization_delay_seconds",
                "Time from Node registration to initialization",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new("ccm_queue_depth", "Objects seen changing that no reconcile has picked up yet"),
            &["controller"],
        )?;
        r.register(Box::new(reconciles.clone()))?;
        r.register(Box::new(latency.clone()))?;
        r.register(Box::new(init_delay.clone()))?;
        r.register(Box::new(queue_depth.clone()))?;
        Ok(Metrics { reconciles, latency, init_delay, queue_depth })
    }
}
