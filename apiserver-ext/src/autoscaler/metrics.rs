//! The autoscaler's metrics, named as cluster-autoscaler's so dashboards and
//! alerts carry over, plus one counter of every decision by reason.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The autoscaler's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `cluster_autoscaler_unschedulable_pods_count`.
    pub unschedulable_pods: IntGauge,
    /// `cluster_autoscaler_unneeded_nodes_count`.
    pub unneeded_nodes: IntGauge,
    /// `cluster_autoscaler_scaled_up_nodes_total{nodepool}`.
    pub scaled_up_nodes: IntCounterVec,
    /// `cluster_autoscaler_scaled_down_nodes_total{nodepool,reason}` (`empty` or `underutilized`).
    pub scaled_down_nodes: IntCounterVec,
    /// `cluster_autoscaler_failed_scale_ups_total{reason}`.
    pub failed_scale_ups: IntCounterVec,
    /// `cluster_autoscaler_evicted_pods_total`.
    pub evicted_pods: IntCounter,
    /// `cluster_autoscaler_function_duration_seconds{function}`: `main`, `scaleUp`, `scaleDown`.
    pub duration: HistogramVec,
    /// `cluster_autoscaler_last_activity{activity}`: unix seconds of the last `main`, `scaleUp`, `scaleDown`.
    pub last_activity: IntGaugeVec,
    /// `sks_autoscaler_decisions_total{decision,reason}`: every decision, by its reason.
    pub decisions: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let m = Metrics {
            unschedulable_pods: gauge("cluster_autoscaler_unschedulable_pods_count", "Pods waiting for a node")?,
            unneeded_nodes: gauge("cluster_autoscaler_unneeded_nodes_count", "Nodes that could be removed")?,
            scaled_up_nodes: IntCounterVec::new(
                Opts::new("cluster_autoscaler_scaled_up_nodes_total", "Nodes added, by nodepool"),
                &["nodepool"],
            )?,
            scaled_down_nodes: IntCounterVec::new(
                Opts::new("cluster_autoscaler_scaled_down_nodes_total", "Nodes removed, by nodepool and reason"),
                &["nodepool", "reason"],
            )?,
            failed_scale_ups: IntCounterVec::new(
                Opts::new("cluster_autoscaler_failed_scale_ups_total", "Scale-ups that failed, by reason"),
                &["reason"],
            )?,
            evicted_pods: IntCounter::new("cluster_autoscaler_evicted_pods_total", "Pods evicted for a scale-down")?,
            duration: HistogramVec::new(
                HistogramOpts::new("cluster_autoscaler_function_duration_seconds", "Duration of the loop's parts")
                    .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
                &["function"],
            )?,
            last_activity: IntGaugeVec::new(
                Opts::new("cluster_autoscaler_last_activity", "When the loop last did each part (unix seconds)"),
                &["activity"],
            )?,
            decisions: IntCounterVec::new(
                Opts::new("sks_autoscaler_decisions_total", "Decisions of the autoscaler, by kind and reason"),
                &["decision", "reason"],
            )?,
        };
        registry.register(Box::new(m.unschedulable_pods.clone()))?;
        registry.register(Box::new(m.unneeded_nodes.clone()))?;
        registry.register(Box::new(m.scaled_up_nodes.clone()))?;
        registry.register(Box::new(m.scaled_down_nodes.clone()))?;
        registry.register(Box::new(m.failed_scale_ups.clone()))?;
        registry.register(Box::new(m.evicted_pods.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.last_activity.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        Ok(m)
    }

    /// Counts one `decision` for `reason`.
    pub fn decided(&self, decision: &str, reason: &str) {
        self.decisions.with_label_values(&[decision, reason]).inc();
    }

    /// Records that `activity` ran now, for `seconds`.
    pub fn ran(&self, activity: &str, seconds: f64) {
        self.duration.with_label_values(&[activity]).observe(seconds);
        self.last_activity.with_label_values(&[activity]).set(jiff::Timestamp::now().as_second());
    }
}
