//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does: acquire when free or expired, renew every retry
//! period, and stop acting the moment a renewal deadline passes.
//!
//! Shared by sks-ccm (only the leader runs controllers) and sks-apiserver
//! (only the leader follows and rolls upgrades). Its calls on the Lease: get,
//! create when missing, update to renew or take it, and update to give it up
//! when the process stops ([`Election::resign`], client-go's ReleaseOnCancel),
//! so a successor takes over at its next retry instead of waiting out the
//! lease (a rolling update would otherwise leave no leader for up to 15 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Settings, with client-go's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// Interval between attempts.
    pub retry_period: Duration,
}

impl Config {
    /// Whether the durations can work: a leader retries several times within
    /// its renew deadline, and stops acting before another replica may take
    /// the lease (retry period < renew deadline < lease duration, as client-go requires).
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period < self.renew_deadline && self.renew_deadline < self.lease_duration {
            return Ok(());
        }
        Err(format!(
            "leader election needs retry period < renew deadline < lease duration; got {:?}, {:?}, {:?}",
            self.retry_period, self.renew_deadline, self.lease_duration
        ))
    }
}

/// How long [`Election::resign`] may take: a stop must not hang on an
/// unreachable API (the kubelet kills the pod after its grace period anyway).
const RESIGN_TIMEOUT: Duration = Duration::from_secs(2);

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// What to write to take or keep the lease, or `None` if another holder's is valid.
pub fn next(lease: &Lease, identity: &str, duration: Duration, at: jiff::Timestamp) -> Option<LeaseSpec> {
    let spec = lease.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(identity);
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(secs)) => renewed.0 + jiff::SignedDuration::from_secs(i64::from(secs)) < at,
        _ => true,
    };
    if !mine && !expired && spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty()) {
        return None;
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    Some(LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration.as_secs() as i32),
        acquire_time: if mine { spec.acquire_time } else { Some(MicroTime(at)) },
        renew_time: Some(MicroTime(at)),
        lease_transitions: Some(transitions),
        ..Default::default()
    })
}

/// What to write to give the lease up, or `None` if `identity` does not hold it:
/// no holder and a 1 s duration, as client-go writes on release.
pub fn released(lease: &Lease, identity: &str, at: jiff::Timestamp) -> Option<LeaseSpec> {
    let spec = lease.spec.clone().unwrap_or_default();
    (spec.holder_identity.as_deref() == Some(identity)).then_some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(at)),
        renew_time: Some(MicroTime(at)),
        ..spec
    })
}

/// `$HOSTNAME` (a pod's name) or the host's name, else `fallback`, with a random
/// suffix: unique even when a restarted pod keeps its name.
pub fn default_identity(fallback: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_owned());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}

/// A running election: whether this replica leads, and a way to step down.
pub struct Election {
    leading: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    cfg: Config,
}

impl Election {
    /// Campaigns for the lease in the background.
    pub fn start(client: kube::Client, cfg: Config) -> Election {
        let leading = Arc::new(watch::channel(false).0);
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let task = tokio::spawn(run(api.clone(), cfg.clone(), leading.clone()));
        Election { leading, task, api, cfg }
    }

    /// Whether this replica leads, as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Stops campaigning, then gives the lease up if this replica holds it,
    /// within [`RESIGN_TIMEOUT`]. The caller has stopped acting as leader first.
    pub async fn resign(self) {
        let identity = self.cfg.identity.clone();
        if tokio::time::timeout(RESIGN_TIMEOUT, self.step_down()).await.is_err() {
            tracing::warn!(%identity, "releasing the leader lease failed; a successor waits for it to expire");
        }
    }

    async fn step_down(self) {
        self.task.abort();
        // The campaign may be mid-renewal; its write lands before ours or makes ours a 409.
        let _ = self.task.await;
        self.leading.send_replace(false);
        let outcome = match self.api.get_opt(&self.cfg.name).await {
            Ok(Some(mut lease)) => match released(&lease, &self.cfg.identity, now().0) {
                Some(spec) => {
                    lease.spec = Some(spec);
                    self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await.map(|_| true)
                }
                None => Ok(false),
            },
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {
                tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.name, "released the leader lease");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "releasing the leader lease failed; a successor waits for it to expire");
            }
        }
    }
}

async fn try_once(api: &Api<Lease>, cfg: &Config) -> Result<bool, kube::Error> {
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: next(&Lease::default(), &cfg.identity, cfg.lease_duration, now().0),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(true)
        }
        Some(mut lease) => match next(&lease, &cfg.identity, cfg.lease_duration, now().0) {
            None => Ok(false),
            Some(spec) => {
                // The write carries the resourceVersion read: a racing replica gets a 409.
                lease.spec = Some(spec);
                api.replace(&cfg.name, &PostParams::default(), &lease).await?;
                Ok(true)
            }
        },
    }
}

/// Runs the election until aborted, publishing whether this replica leads.
async fn run(api: Api<Lease>, cfg: Config, leading: Arc<watch::Sender<bool>>) {
    let mut last_renewed: Option<Instant> = None;
    loop {
        match try_once(&api, &cfg).await {
            Ok(true) => {
                if !*leading.borrow() {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader");
                }
                last_renewed = Some(Instant::now());
                leading.send_replace(true);
            }
            Ok(false) => {
                if *leading.borrow() {
                    tracing::warn!(identity = %cfg.identity, "another replica holds the lease; stopping");
                }
                last_renewed = None;
                leading.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the leader lease failed");
                if last_renewed.is_some_and(|t| t.elapsed() > cfg.renew_deadline) && *leading.borrow() {
                    tracing::warn!(identity = %cfg.identity, "renew deadline passed; stopping");
                    leading.send_replace(false);
                    last_renewed = None;
                }
            }
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago);
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(at)),
                lease_duration_seconds: Some(duration),
                lease_transitions: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn takes_free_or_expired_leases_and_renews_its_own() {
        let now = jiff::Timestamp::now();
        let d = Duration::from_secs(15);
        assert!(next(&lease("other", 5, 15), "me", d, now).is_none(), "a valid lease of another holder");
        let taken = next(&lease("other", 20, 15), "me", d, now).unwrap();
        assert_eq!((taken.holder_identity.as_deref(), taken.lease_transitions), (Some("me"), Some(4)));
        let renewed = next(&lease("me", 5, 15), "me", d, now).unwrap();
        assert_eq!(renewed.lease_transitions, Some(3), "renewing is no transition");
        assert!(next(&Lease::default(), "me", d, now).is_some());
    }

    #[test]
    fn durations_must_nest() {
        let cfg = |retry, renew, lease| Config {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        };
        assert!(cfg(2, 10, 15).check().is_ok());
        for (retry, renew, lease) in [(10, 10, 15), (2, 15, 15), (2, 20, 15)] {
            let e = cfg(retry, renew, lease).check().unwrap_err();
            assert!(e.contains("retry period < renew deadline < lease duration"), "{e}");
        }
    }

    #[test]
    fn only_the_holder_releases_and_a_released_lease_is_free() {
        let now = jiff::Timestamp::now();
        assert!(released(&lease("other", 1, 15), "me", now).is_none(), "never another holder's");
        let spec = released(&lease("me", 1, 15), "me", now).unwrap();
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (None, Some(3)));
        let free = Lease { spec: Some(spec), ..Default::default() };
        let taken = next(&free, "successor", Duration::from_secs(15), now).expect("free at once");
        assert_eq!(taken.holder_identity.as_deref(), Some("successor"));
    }
}
