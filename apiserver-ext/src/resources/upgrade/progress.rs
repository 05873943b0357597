//! An Upgrade's state and how it moves: pure functions of what the
//! orchestrator reports (the control-plane record) and what the cluster shows
//! (nodepools, their instances' templates, Node readiness).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::resources::inspection::{Component, UpgradeRecord};

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// Target version.
    #[serde(default)]
    pub version: String,
    /// Replace the old-version nodes afterwards.
    #[serde(default)]
    pub roll_nodepools: bool,
}

/// A component as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentState {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// running, upgrading or pending.
    pub state: String,
}

/// One nodepool's roll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodepoolProgress {
    /// Nodepool name.
    pub name: String,
    /// Pending, Rolling, Done or Failed.
    pub phase: String,
    /// Old-version nodes when its roll started.
    pub total: i64,
    /// Nodes replaced.
    pub replaced: i64,
    /// The node being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacing: Option<String>,
    /// When it was evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Ready up-to-date nodes at that moment.
    #[serde(default)]
    pub ready_before: i64,
    /// The replacement asked of the orchestrator, recorded before asking
    /// (write-ahead) and kept until both its calls are seen done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_replacement: Option<Replacement>,
}

/// One node replacement: grow `nodepool` to `size` plus one, then evict
/// `instance` (which shrinks it back to `size`), so the pool never has fewer
/// nodes than `size`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    /// Nodepool id.
    pub nodepool: Uuid,
    /// Instance evicted.
    pub instance: Uuid,
    /// Nodepool size the replacement keeps (it grows to one more, then evicts).
    pub size: i64,
}

/// A condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Complete or Failed.
    #[serde(rename = "type")]
    pub type_: String,
    /// True or False.
    pub status: String,
    /// Why.
    pub reason: String,
    /// Details.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: String,
    /// Generation it describes.
    pub observed_generation: i64,
}

/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// Version before.
    #[serde(default)]
    pub from: String,
    /// Target.
    #[serde(default)]
    pub to: String,
    /// Manual or Auto.
    #[serde(default)]
    pub trigger: String,
    /// Pending, ControlPlane, Nodepools, Succeeded, Failed.
    #[serde(default)]
    pub phase: String,
    /// What happens now, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The orchestrator's record id.
    #[serde(default, rename = "orchestratorUpgradeID", skip_serializing_if = "Option::is_none")]
    pub orchestrator_upgrade_id: Option<String>,
    /// Components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane: Vec<ComponentState>,
    /// Node roll.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodepools: Vec<NodepoolProgress>,
    /// Generation described.
    #[serde(default)]
    pub observed_generation: i64,
    /// Complete and Failed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Phases.
pub mod phase {
    /// Accepted, the orchestrator has not started it yet.
    pub const PENDING: &str = "Pending";
    /// Components being replaced.
    pub const CONTROL_PLANE: &str = "ControlPlane";
    /// Nodes being replaced.
    pub const NODEPOOLS: &str = "Nodepools";
    /// Done.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Stopped.
    pub const FAILED: &str = "Failed";
}

impl UpgradeStatus {
    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        matches!(self.phase.as_str(), phase::SUCCEEDED | phase::FAILED)
    }

    /// Ends it, setting Complete and Failed.
    pub fn end(&mut self, succeeded: bool, message: String, now: &str, generation: i64) {
        self.phase = (if succeeded { phase::SUCCEEDED } else { phase::FAILED }).to_owned();
        self.completed_at = Some(now.to_owned());
        self.message = Some(message.clone());
        let (complete, failed) = if succeeded { ("True", "False") } else { ("False", "True") };
        let reason = if succeeded { "UpgradeSucceeded" } else { "UpgradeFailed" };
        self.conditions = ["Complete", "Failed"]
            .iter()
            .zip([complete, failed])
            .map(|(t, s)| Condition {
                type_: (*t).to_owned(),
                status: s.to_owned(),
                reason: reason.to_owned(),
                message: message.clone(),
                last_transition_time: now.to_owned(),
                observed_generation: generation,
            })
            .collect();
    }

    /// Sets both conditions False while it runs.
    pub fn running(&mut self, phase: &str, message: String, now: &str, generation: i64) {
        let changed = self.phase != phase;
        self.phase = phase.to_owned();
        self.message = Some(message.clone());
        if changed || self.conditions.is_empty() {
            self.conditions = ["Complete", "Failed"]
                .iter()
                .map(|t| Condition {
                    type_: (*t).to_owned(),
                    status: "False".into(),
                    reason: "InProgress".into(),
                    message: message.clone(),
                    last_transition_time: now.to_owned(),
                    observed_generation: generation,
                })
                .collect();
        }
    }
}

/// "auto" → "Auto", anything else → "Manual".
pub fn trigger(record: &UpgradeRecord) -> &'static str {
    if record.trigger.eq_ignore_ascii_case("auto") { "Auto" } else { "Manual" }
}

/// Moves `status` along the orchestrator's record of its control-plane upgrade.
pub fn follow(
    status: &mut UpgradeStatus,
    spec: &UpgradeSpec,
    record: &UpgradeRecord,
    components: &[Component],
    now: &str,
    generation: i64,
) {
    if status.ended() {
        return;
    }
    status.orchestrator_upgrade_id = Some(record.id.clone());
    if status.from.is_empty() {
        status.from = record.from.clone();
    }
    status.to = record.to.clone();
    if status.started_at.is_none() {
        status.started_at = record.started_at.clone();
    }
    status.control_plane = components
        .iter()
        .map(|c| ComponentState { name: c.name.clone(), version: c.version.clone(), state: c.state.clone() })
        .collect();
    match record.state.as_str() {
        "running" => {
            let doing = components.iter().find(|c| c.state == "upgrading").map(|c| c.name.as_str());
            let message = match doing {
                Some(c) => format!("replacing {c} with version {}", record.to),
                None => format!("upgrading the control plane to {}", record.to),
            };
            status.running(phase::CONTROL_PLANE, message, now, generation);
        }
        "succeeded" if spec.roll_nodepools && status.phase != phase::NODEPOOLS => {
            let message = format!("control plane at {}; replacing nodes of the previous version", record.to);
            status.running(phase::NODEPOOLS, message, now, generation);
        }
        "succeeded" if spec.roll_nodepools => {}
        "succeeded" => status.end(true, format!("the control plane runs {}", record.to), now, generation),
        "failed" => {
            let why = record.message.clone().unwrap_or_else(|| "the orchestrator reported a failure".into());
            status.end(false, format!("control-plane upgrade to {} failed: {why}", record.to), now, generation);
        }
        _ => {}
    }
}

/// Whether a requested upgrade has waited longer than `after` for the
/// orchestrator's record of it: it was stored, but the orchestrator was never
/// asked (its requester stopped in between).
pub fn never_started(status: &UpgradeStatus, now: jiff::Timestamp, after: Duration) -> bool {
    let started = status.started_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    status.phase == phase::PENDING
        && status.orchestrator_upgrade_id.is_none()
        && started.is_some_and(|t| now.duration_since(t).as_secs_f64() > after.as_secs_f64())
}

/// A node of a nodepool as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Instance id.
    pub id: Uuid,
    /// Instance (and Node) name.
    pub name: String,
    /// Whether the instance runs the nodepool's current template.
    pub up_to_date: bool,
    /// Whether its Node is Ready and initialized by sks-ccm.
    pub ready: bool,
}

/// A nodepool as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Its size as the orchestrator reports it.
    pub size: i64,
    /// Its instances.
    pub members: Vec<Member>,
}

/// What the roll does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Grow its nodepool by one above `size`, then evict this instance (then
    /// wait for its replacement). Recorded in the progress as
    /// `pending_replacement`, which must be stored before the orchestrator is asked.
    Replace(Replacement),
    /// The instance of a recorded replacement is gone but its nodepool is
    /// smaller than `size` (evicted without growing first, as rolls before
    /// growth-first did, or shrunk by someone else): grow `nodepool` back to `size`.
    Restore {
        /// Nodepool id.
        nodepool: Uuid,
        /// Size to restore.
        size: i64,
    },
    /// A replacement is on its way.
    Wait,
    /// Every nodepool runs the new version.
    Done,
    /// A replacement did not become Ready in time: stop, evicting nothing more.
    Failed(String),
}

/// How far a recorded replacement got, from the nodepool as it is now.
pub fn replacement_step(pending: &Replacement, pool: &Pool) -> Option<RollStep> {
    if pool.members.iter().any(|m| m.id == pending.instance) {
        // Not evicted yet (or the eviction failed): ask again, for this instance
        // only (the pool grown already is not grown again).
        return Some(RollStep::Replace(pending.clone()));
    }
    // Grow only: a larger pool was grown by someone else since (auto-heal's
    // replacement, say), and shrinking it would drop a node nobody chose.
    if pool.size < pending.size {
        return Some(RollStep::Restore { nodepool: pending.nodepool, size: pending.size });
    }
    None
}

/// The next step of the roll, updating `progress` (one entry per nodepool).
/// A recorded replacement is completed before anything else is chosen.
pub fn roll_step(
    progress: &mut Vec<NodepoolProgress>,
    pools: &[Pool],
    now: jiff::Timestamp,
    timeout: Duration,
) -> RollStep {
    let mut names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    for name in names {
        if !progress.iter().any(|p| p.name == name) {
            let pool = pools.iter().find(|p| p.name == name).expect("listed");
            let total = pool.members.iter().filter(|m| !m.up_to_date).count() as i64;
            progress.push(NodepoolProgress {
                name: name.to_owned(),
                phase: "Pending".into(),
                total,
                ..Default::default()
            });
        }
    }
    for entry in progress.iter_mut() {
        if matches!(entry.phase.as_str(), "Done" | "Failed") {
            continue;
        }
        let Some(pool) = pools.iter().find(|p| p.name == entry.name) else {
            // The nodepool is gone: nothing left to roll there.
            entry.phase = "Done".into();
            continue;
        };
        if let Some(pending) = &entry.pending_replacement {
            match replacement_step(pending, pool) {
                Some(step) => return step,
                None => entry.pending_replacement = None,
            }
        }
        let ready_new = pool.members.iter().filter(|m| m.up_to_date && m.ready).count() as i64;
        if let Some(node) = entry.replacing.clone() {
            if ready_new > entry.ready_before {
                entry.replaced += 1;
                entry.replacing = None;
                entry.since = None;
            } else {
                let since = entry.since.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok()).unwrap_or(now);
                let waited = now.duration_since(since).as_secs_f64();
                if waited > timeout.as_secs_f64() {
                    entry.phase = "Failed".into();
                    return RollStep::Failed(format!(
                        "the replacement of node {node} in nodepool {} did not join, get initialized and become Ready within {}s; the roll stopped and evicts nothing more",
                        entry.name,
                        timeout.as_secs()
                    ));
                }
                return RollStep::Wait;
            }
        }
        let mut old: Vec<&Member> = pool.members.iter().filter(|m| !m.up_to_date).collect();
        old.sort_by(|a, b| a.name.cmp(&b.name));
        match old.first() {
            None => entry.phase = "Done".into(),
            Some(m) => {
                entry.phase = "Rolling".into();
                entry.replacing = Some(m.name.clone());
                entry.since = Some(now.to_string());
                entry.ready_before = ready_new;
                let replacement = Replacement { nodepool: pool.id, instance: m.id, size: pool.size };
                entry.pending_replacement = Some(replacement.clone());
                return RollStep::Replace(replacement);
            }
        }
    }
    RollStep::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, up_to_date: bool, ready: bool) -> Member {
        Member { id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()), name: name.into(), up_to_date, ready }
    }

    /// Nodepool `workers` of size 2, both nodes of the previous version.
    fn two_old() -> Pool {
        Pool {
            id: Uuid::nil(),
            name: "workers".into(),
            size: 2,
            members: vec![member("a", false, true), member("b", false, true)],
        }
    }

    fn record(state: &str) -> UpgradeRecord {
        UpgradeRecord {
            id: "r1".into(),
            from: "1.33.5".into(),
            to: "1.34.2".into(),
            trigger: "manual".into(),
            state: state.into(),
            started_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn follows_the_control_plane_then_ends_or_rolls() {
        let mut st = UpgradeStatus::default();
        let spec = UpgradeSpec { version: "1.34.2".into(), roll_nodepools: false };
        let upgrading = Component { name: "kube-scheduler".into(), state: "upgrading".into(), ..Default::default() };
        follow(&mut st, &spec, &record("running"), &[upgrading], "t1", 1);
        assert_eq!(
            (st.phase.as_str(), st.message.as_deref()),
            ("ControlPlane", Some("replacing kube-scheduler with version 1.34.2"))
        );
        assert_eq!(st.conditions.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(), vec!["False", "False"]);
        follow(&mut st, &spec, &record("succeeded"), &[], "t2", 1);
        assert_eq!(
            (st.phase.as_str(), st.completed_at.as_deref(), st.conditions[0].status.as_str()),
            ("Succeeded", Some("t2"), "True")
        );
        let mut rolled = UpgradeStatus::default();
        let roll = UpgradeSpec { roll_nodepools: true, ..spec.clone() };
        follow(&mut rolled, &roll, &record("succeeded"), &[], "t2", 1);
        assert_eq!(rolled.phase, "Nodepools");
        let mut failed = UpgradeStatus::default();
        let mut r = record("failed");
        r.message = Some("kube-scheduler crashed".into());
        follow(&mut failed, &spec, &r, &[], "t3", 1);
        assert_eq!(
            (failed.phase.as_str(), failed.conditions[1].type_.as_str(), failed.conditions[1].status.as_str()),
            ("Failed", "Failed", "True")
        );
        assert!(failed.message.unwrap().contains("kube-scheduler crashed"));
    }

    #[test]
    fn rolls_one_node_at_a_time_waiting_for_each_replacement() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let timeout = Duration::from_secs(60);
        let mut progress = Vec::new();
        let mut pool = two_old();
        let step = roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout);
        assert_eq!(
            step,
            RollStep::Replace(Replacement { nodepool: Uuid::nil(), instance: pool.members[0].id, size: 2 })
        );
        assert_eq!((progress[0].total, progress[0].replacing.as_deref()), (2, Some("a")));
        // Evicted, the replacement is not Ready yet: wait, evict nothing else.
        pool.members.remove(0);
        pool.members.push(member("c", true, false));
        assert_eq!(roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout), RollStep::Wait);
        assert_eq!(progress[0].pending_replacement, None, "both calls seen done");
        pool.members[1].ready = true;
        let step = roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout);
        assert_eq!(
            step,
            RollStep::Replace(Replacement { nodepool: Uuid::nil(), instance: pool.members[0].id, size: 2 })
        );
        assert_eq!((progress[0].replaced, progress[0].ready_before), (1, 1));
        pool.members.remove(0);
        pool.members.push(member("d", true, true));
        assert_eq!(roll_step(&mut progress, &[pool], t0, timeout), RollStep::Done);
        assert_eq!((progress[0].phase.as_str(), progress[0].replaced), ("Done", 2));
    }

    #[test]
    fn a_replacement_that_never_gets_ready_fails_the_roll() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut progress = Vec::new();
        let mut pool = two_old();
        roll_step(&mut progress, std::slice::from_ref(&pool), t0, Duration::from_secs(30));
        pool.members.remove(0);
        pool.members.push(member("c", true, false));
        let later = t0 + jiff::SignedDuration::from_secs(31);
        let RollStep::Failed(why) = roll_step(&mut progress, &[pool], later, Duration::from_secs(30)) else { panic!() };
        assert!(why.contains("node a in nodepool workers") && why.contains("30s"), "{why}");
        assert_eq!(progress[0].phase, "Failed");
    }

    #[test]
    fn a_recorded_replacement_is_completed_before_anything_else() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let timeout = Duration::from_secs(60);
        let mut pool = two_old();
        let a = Replacement { nodepool: Uuid::nil(), instance: pool.members[0].id, size: 2 };

        // Fresh step: the intent is recorded in the progress with the size to restore.
        let mut progress = Vec::new();
        assert_eq!(roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout), RollStep::Replace(a.clone()));
        assert_eq!(progress[0].pending_replacement.as_ref(), Some(&a));
        // Nothing done yet (the call failed, or the process stopped before it): the same instance again.
        assert_eq!(roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout), RollStep::Replace(a.clone()));

        // Evicted, but the pool was not scaled back: restore its size, evict nothing else.
        pool.members.remove(0);
        pool.size = 1;
        let restore = RollStep::Restore { nodepool: Uuid::nil(), size: 2 };
        assert_eq!(roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout), restore);
        assert_eq!(replacement_step(&a, &pool), Some(restore));
        assert_eq!(progress[0].pending_replacement.as_ref(), Some(&a), "kept until the size is back");

        // Larger than recorded (auto-heal grew it meanwhile): never shrunk back.
        pool.size = 3;
        assert_eq!(replacement_step(&a, &pool), None, "a larger pool is not scaled down to the recorded size");
        // Both done: the intent is dropped and the roll waits for the replacement.
        pool.size = 2;
        pool.members.push(member("c", true, false));
        assert_eq!(replacement_step(&a, &pool), None);
        assert_eq!(roll_step(&mut progress, std::slice::from_ref(&pool), t0, timeout), RollStep::Wait);
        assert_eq!((progress[0].pending_replacement.as_ref(), progress[0].replacing.as_deref()), (None, Some("a")));
    }

    #[test]
    fn a_pending_upgrade_without_a_record_ends_after_a_while() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut st = UpgradeStatus { phase: "Pending".into(), started_at: Some(t0.to_string()), ..Default::default() };
        let after = Duration::from_secs(300);
        assert!(!never_started(&st, t0 + jiff::SignedDuration::from_secs(60), after));
        assert!(never_started(&st, t0 + jiff::SignedDuration::from_secs(301), after));
        st.orchestrator_upgrade_id = Some("r1".into());
        assert!(!never_started(&st, t0 + jiff::SignedDuration::from_secs(301), after), "the orchestrator has it");
    }
}
