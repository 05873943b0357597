//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does: acquire when free or expired, renew every retry
//! period, and stop acting the moment a renewal deadline passes.
//!
//! Shared by sks-ccm (only the leader runs controllers) and sks-apiserver
//! (only the leader follows and rolls upgrades). Its calls on the Lease: get,
//! create when missing, update to renew or take it.

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

/// Runs the election forever, publishing whether this replica leads.
pub async fn run(client: kube::Client, cfg: Config, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
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
}
