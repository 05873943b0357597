//! Scale-up: the nodes pending pods need, one orchestrator call per
//! nodepool, the events cluster-autoscaler users know, and the nodepools
//! whose requested nodes never came (backed off, never asked again and again).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sks_autoscaler::scale_up::Increase;
use sks_autoscaler::{ClusterSnapshot, NodeInfo, PodInfo, ScaleUpOptions, Template, events, plan_scale_up};
use sks_kubeclient::events::EventType;
use uuid::Uuid;

use super::{Autoscaler, Provisioning, REPORT_EVERY, nodepool_ref, now, pod_ref, templates};
use crate::resources::metadata::ScaleChange;
use crate::resources::nodepool::autoscaling::Autoscaled;

impl Autoscaler {
    /// Notices scale-ups whose nodes did not come in time: the nodepool is
    /// backed off and the failure reported, instead of asked again and again.
    pub(super) async fn follow_provisioning(&self, pools: &[Autoscaled], nodes: &[&NodeInfo]) {
        let mut timed_out = Vec::new();
        let started_by = super::started_by(self.options.max_node_provision_time);
        {
            let mut state = self.state();
            for pool in pools {
                let waiting = templates::upcoming(pool, nodes, started_by) > 0;
                match (waiting, state.provisioning.get(&pool.id).copied()) {
                    (false, _) => {
                        state.provisioning.remove(&pool.id);
                    }
                    (true, Some(p)) if p.since.elapsed() > self.options.max_node_provision_time => {
                        state.provisioning.remove(&pool.id);
                        state.backed_off.insert(pool.id, Instant::now() + self.options.backoff);
                        timed_out.push(pool.clone());
                    }
                    (true, Some(_)) => {}
                    (true, None) => {
                        state.provisioning.insert(pool.id, Provisioning { since: Instant::now() });
                    }
                }
            }
        }
        for pool in timed_out {
            let note = format!(
                "nodes requested for nodepool {} did not become Ready within {:?}: no scale-up of it for {:?}",
                pool.name, self.options.max_node_provision_time, self.options.backoff
            );
            tracing::warn!(nodepool = %pool.name, "{note}");
            self.metrics.failed_scale_ups.with_label_values(&["timeout"]).inc();
            self.metrics.decided("backoff", "MaxNodeProvisionTime");
            self.event(&nodepool_ref(&pool.id.to_string(), &pool.name), EventType::Warning, "ScaleUpTimedOut", &note)
                .await;
        }
    }

    /// Grows the nodepools `pending` pods need. True when some of them are
    /// about to land on nodes that exist or are on their way: those nodes
    /// must not be taken away meanwhile.
    pub(super) async fn scale_up(
        &self,
        pending: &[&PodInfo],
        snapshot: &ClusterSnapshot<'_>,
        templates: &[Template],
        pools: &[Autoscaled],
    ) -> bool {
        let options = ScaleUpOptions { priorities: self.options.priorities.clone() };
        let plan = plan_scale_up(pending.iter().copied(), snapshot, templates, &options);
        let landing =
            !plan.fits_existing.is_empty() || !plan.awaiting_upcoming.is_empty() || !plan.increases.is_empty();
        let mut targets: BTreeMap<Uuid, (i64, i64, String)> = BTreeMap::new();
        for inc in &plan.increases {
            let Ok(id) = inc.template.nodepool_id.parse::<Uuid>() else { continue };
            let reason = format!("{} pending pod(s)", inc.pods.len());
            targets.insert(id, (i64::from(inc.from), i64::from(inc.to), reason));
        }
        // Below its minimum (set, or raised, after it was smaller): up to it.
        for pool in pools {
            if pool.size < pool.bounds.min_replicas && !targets.contains_key(&pool.id) {
                targets.insert(
                    pool.id,
                    (pool.size, pool.bounds.min_replicas, "below spec.autoscaling.minReplicas".into()),
                );
            }
        }
        // Every pool is asked first and reported after: the events of one
        // pool's pods (one a pod) do not hold up the next pool's scale-up.
        let mut scaled = Vec::new();
        for (id, (planned_from, to, reason)) in &targets {
            let Some(pool) = pools.iter().find(|p| p.id == *id) else { continue };
            // The plan's sizes are the nodepool cache's, which may predate the
            // last resize: the size is read again, and a pool already as large
            // is left alone (a smaller size would drop nodes nobody chose).
            let live = match self.orchestrator.get_sks_nodepool(self.cluster, *id).await {
                Ok(np) => np.size,
                Err(e) => {
                    tracing::warn!(nodepool = %pool.name, error = %e, "reading the nodepool before a scale-up failed; retrying next round");
                    continue;
                }
            };
            let Some(from) = growth(live, *to) else {
                tracing::debug!(nodepool = %pool.name, planned_from, to, live, "the nodepool is already as large as planned");
                continue;
            };
            match self.orchestrator.scale_sks_nodepool(self.cluster, *id, *to).await {
                Ok(_) => scaled.push((pool, from, *to, reason.as_str())),
                Err(e) => self.scale_up_failed(pool, *to, &e).await,
            }
        }
        // The next round must plan from the sizes just asked for: from the
        // cache's, up to a refresh period old, it would ask again, and once
        // some of the new nodes are Ready, shrink the pool under the others.
        if !scaled.is_empty()
            && let Err(e) = self.nodepools.refresh().await
        {
            tracing::warn!(error = %e, "refreshing the nodepools after a scale-up failed");
        }
        for (pool, from, to, reason) in scaled {
            let increase = plan.increases.iter().find(|i| i.template.nodepool_id == pool.id.to_string());
            self.scaled_up(pool, from, to, reason, increase).await;
        }
        for unhelped in &plan.unhelped {
            let message = unhelped.message();
            let due = {
                let mut state = self.state();
                let key = unhelped.pod.uid.to_string();
                let due = state.reported.get(&key).is_none_or(|(m, at)| *m != message || at.elapsed() > REPORT_EVERY);
                if due {
                    state.reported.insert(key, (message.clone(), Instant::now()));
                }
                due
            };
            if due {
                self.metrics.decided("not_triggered", "NoNodepoolFits");
                self.event(&pod_ref(unhelped.pod), EventType::Normal, events::NOT_TRIGGER_SCALE_UP, &message).await;
            }
        }
        {
            let live: BTreeSet<String> = pending.iter().map(|p| p.uid.to_string()).collect();
            self.state().reported.retain(|uid, _| live.contains(uid));
        }
        // ScalingLimited: pools at their maximum with pods waiting for them.
        let limited: BTreeSet<&str> = plan.limited.iter().map(|t| t.nodepool_id.as_str()).collect();
        for pool in pools {
            let id = pool.id.to_string();
            let message = limited.contains(id.as_str()).then(|| {
                format!(
                    "pods wait: nodepool {} is at spec.autoscaling.maxReplicas ({})",
                    pool.name, pool.bounds.max_replicas
                )
            });
            if let Err(e) = self.nodepools.record_autoscaling(pool.id, |s| s.limited = message).await {
                tracing::debug!(nodepool = %pool.name, error = %e.message, "recording ScalingLimited failed");
            }
        }
        landing
    }

    /// Reports a scale-up of `pool` from `from` to `to` nodes: log, metrics,
    /// `status.autoscaling`, and the events of the NodePool and of the pods it is for.
    async fn scaled_up(&self, pool: &Autoscaled, from: i64, to: i64, reason: &str, increase: Option<&Increase<'_>>) {
        let id = pool.id;
        tracing::info!(nodepool = %pool.name, from, to, %reason, "scaled up");
        self.metrics.scaled_up_nodes.with_label_values(&[&pool.name]).inc_by(u64::try_from(to - from).unwrap_or(0));
        self.metrics.decided("scale_up", "PendingPods");
        let stamp = now();
        {
            let mut state = self.state();
            state.last_scale_up.insert(id.to_string(), stamp);
            state.provisioning.insert(id, Provisioning { since: Instant::now() });
        }
        let change = ScaleChange { time: stamp.to_string(), from, to, reason: reason.to_owned() };
        if let Err(e) = self.nodepools.record_autoscaling(id, |s| s.last_scale_up = Some(change)).await {
            tracing::warn!(nodepool = %pool.name, error = %e.message, "recording a scale-up failed");
        }
        let regarding = nodepool_ref(&id.to_string(), &pool.name);
        let size = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        let note = events::scaled_up_group(&events::ScaleUpInfo {
            group: &pool.name,
            current: size(from),
            new: size(to),
            max: size(pool.bounds.max_replicas),
        });
        self.event(&regarding, EventType::Normal, events::SCALED_UP_GROUP, &note).await;
        if let Some(inc) = increase {
            let message = inc.pod_message();
            for pod in &inc.pods {
                self.event(&pod_ref(pod), EventType::Normal, events::TRIGGERED_SCALE_UP, &message).await;
            }
        }
    }

    /// Reports a refused scale-up of `pool` to `to` nodes and backs the pool off for a while.
    async fn scale_up_failed(&self, pool: &Autoscaled, to: i64, e: &orchestrator::Error) {
        tracing::warn!(nodepool = %pool.name, error = %e, "a scale-up failed; backing the nodepool off");
        self.metrics.failed_scale_ups.with_label_values(&["cloudProviderError"]).inc();
        self.state().backed_off.insert(pool.id, Instant::now() + self.options.backoff.min(Duration::from_secs(30)));
        let note = format!("scaling nodepool {} to {to} failed: {e}", pool.name);
        self.event(&nodepool_ref(&pool.id.to_string(), &pool.name), EventType::Warning, "FailedToScaleUpGroup", &note)
            .await;
    }
}

/// The size a scale-up to `to` starts from, given the nodepool's `live` size:
/// `None` when it is that large already (scaling to `to` would shrink it or
/// change nothing).
fn growth(live: i64, to: i64) -> Option<i64> {
    (live < to).then_some(live)
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn a_scale_up_never_shrinks_a_nodepool_grown_since_the_plan() {
        assert_eq!(growth(3, 5), Some(3), "as planned");
        assert_eq!(growth(4, 5), Some(4), "grown meanwhile by one: from there");
        assert_eq!(growth(5, 4), None, "planned from a stale size: scaling to 4 would drop a node");
        assert_eq!(growth(5, 5), None, "nothing to add");
    }
}
