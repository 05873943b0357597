//! The system under test: a local zone holding a cluster with many nodepools,
//! and an `sks-apiserver` serving that cluster, both on loopback; with a
//! Kubernetes API (kube-standin, or the real one with `KUBE_ASSETS`) that
//! sks-apiserver uses as deployed (`--kubeconfig`: metadata in ConfigMaps,
//! leader election, the Node watch), unless the scenario runs without.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use orchestrator::model::{CreateSksNodepool, Ref, SksNodepoolSpec};
use serde_json::Value;
use sks_e2e::apiserver::ApiServer;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::pki::TestPki;
use sks_e2e::zone::{Zone, ZoneOptions};

use crate::client::Target;
use crate::procfs::Proc;
use crate::requests::Counts;

/// The nodepools API path.
pub const NODEPOOLS: &str = "/apis/sks.exoscale.net/v1alpha1/nodepools";
/// The seeded nodepool, present besides the benchmark's own.
pub const SEED_NODEPOOL: &str = "workers";
/// How many nodepools are created at once.
const CREATE_CONCURRENCY: usize = 16;

/// Name of the `i`th benchmark nodepool.
pub fn nodepool_name(i: usize) -> String {
    format!("bench-{i:05}")
}

/// A zone, its seeded cluster with extra nodepools, and an apiserver for it.
pub struct Stack {
    /// The apiserver (dropped first: it is declared first).
    pub api: ApiServer,
    /// The Kubernetes API sks-apiserver uses, if any.
    kube: Option<KubeApi>,
    /// The zone, kept running as long as the stack lives.
    _zone: Zone,
    /// The apiserver process.
    pub api_proc: Proc,
    /// The zone process.
    pub zone_proc: Proc,
    /// An admin client of the apiserver for control requests (not for load).
    pub http: reqwest::Client,
    /// Where load goes, with the admin certificate.
    pub target: Target,
    /// Names of every nodepool, the seeded one included.
    pub names: Vec<String>,
    /// Time to create the benchmark's nodepools in the zone.
    pub create_seconds: f64,
    /// Time from starting the apiserver to a complete LIST.
    pub ready_seconds: f64,
}

/// The admin identity (system:masters) of an apiserver's PKI.
pub fn admin(pki: &TestPki) -> sks_pki::IssuedCert {
    TestPki::client(&pki.client_ca, "admin", &["system:masters"])
}

/// An admin (system:masters) client of an apiserver with `pki`, for control requests.
pub fn control_client(pki: &TestPki) -> anyhow::Result<reqwest::Client> {
    orchestrator::install_crypto_provider();
    let id = admin(pki);
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.serving_ca.cert_pem.as_bytes())?])
        .identity(reqwest::Identity::from_pem(format!("{}{}", id.cert_pem, id.key_pem).as_bytes())?)
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl Stack {
    /// Starts a seeded zone, adds `nodepools` nodepools of one node, then starts
    /// an apiserver with `api_args` (and a Kubernetes API for it when `kube`)
    /// and waits until it lists them all.
    pub async fn start(nodepools: usize, api_args: &[&str], kube: bool) -> anyhow::Result<Stack> {
        eprintln!("starting sks-zone from {}", sks_e2e::bin_dir().display());
        let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
        let zone_proc = Proc::find_child("sks-zone", &zone.state_dir().display().to_string())?;
        let client = zone.client().await;
        let cluster = client.list_sks_clusters().await?.first().context("the seeded cluster")?.id;
        let types = client.list_instance_types().await?;
        let medium = types.iter().find(|t| t.name() == "standard.medium").context("instance type standard.medium")?.id;

        eprintln!("creating {nodepools} nodepools ({CREATE_CONCURRENCY} at a time)");
        let started = Instant::now();
        let results: Vec<_> = futures::stream::iter(0..nodepools)
            .map(|i| {
                let client = client.clone();
                async move {
                    let body = CreateSksNodepool {
                        spec: SksNodepoolSpec {
                            name: Some(nodepool_name(i)),
                            instance_type: Some(Ref { id: medium }),
                            disk_size: Some(20),
                            ..Default::default()
                        },
                        size: 1,
                        addons: None,
                    };
                    client
                        .create_sks_nodepool(cluster, &body)
                        .await
                        .with_context(|| format!("creating {}", nodepool_name(i)))
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let create_seconds = started.elapsed().as_secs_f64();

        let kube = if kube {
            eprintln!("starting the Kubernetes API sks-apiserver uses");
            Some(KubeApi::start(KubeOptions::default()).await)
        } else {
            None
        };
        let kubeconfig = kube.as_ref().map(|k| k.kubeconfig.display().to_string());
        let mut args = api_args.to_vec();
        if let Some(k) = &kubeconfig {
            args.extend(["--kubeconfig", k]);
        }
        eprintln!("starting sks-apiserver");
        let started = Instant::now();
        let api = ApiServer::start(&zone, &cluster.to_string(), &args);
        let api_proc = Proc::find_child("sks-apiserver", &api.dir().display().to_string())?;
        let http = control_client(&api.pki)?;
        let target = Target::new(&api.url, &api.pki.serving_ca.cert_pem, &admin(&api.pki))?;
        let mut names: Vec<String> = (0..nodepools).map(nodepool_name).collect();
        names.push(SEED_NODEPOOL.to_owned());
        let mut stack = Stack {
            api,
            kube,
            _zone: zone,
            api_proc,
            zone_proc,
            http,
            target,
            names,
            create_seconds,
            ready_seconds: 0.0,
        };
        stack.wait_listed(nodepools + 1, Duration::from_secs(120)).await?;
        stack.ready_seconds = started.elapsed().as_secs_f64();
        Ok(stack)
    }

    /// `GET url` with the admin client: status and JSON body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{path}", self.api.url)).send().await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Waits until `/readyz` answers 200 and a LIST has `count` items.
    async fn wait_listed(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.http.get(format!("{}/readyz", self.api.url)).send().await {
                Ok(r) if r.status() == 200 => match self.get_json(NODEPOOLS).await {
                    Ok((200, list)) => {
                        let n = list["items"].as_array().map_or(0, Vec::len);
                        if n == count {
                            return Ok(());
                        }
                        last = format!("LIST has {n} of {count} items");
                    }
                    Ok((status, body)) => last = format!("LIST answered {status}: {body}"),
                    Err(e) => last = format!("LIST failed: {e:#}"),
                },
                Ok(r) => last = format!("/readyz answered {}", r.status()),
                Err(e) => last = format!("/readyz failed: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("sks-apiserver not ready after {timeout:?}: {last}")
    }

    /// The apiserver's /metrics text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self.http.get(format!("{}/metrics", self.api.url)).send().await?.error_for_status()?;
        Ok(resp.text().await?)
    }

    /// What sks-apiserver sent to the Kubernetes API so far (its client's counts).
    pub async fn kube_requests(&self) -> anyhow::Result<Counts> {
        Ok(Counts::sent(&self.metrics().await?))
    }

    /// What the Kubernetes API served so far, when there is one (everything it
    /// serves here comes from sks-apiserver, besides these /metrics reads).
    pub async fn kube_served(&self) -> anyhow::Result<Option<Counts>> {
        let Some(kube) = &self.kube else { return Ok(None) };
        let client = kube.client().await;
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = client.request_text(req).await.context("the Kubernetes API's /metrics")?;
        Ok(Some(Counts::served(&text)))
    }

    /// `orchestrator_requests_total` from the apiserver's /metrics, by operation.
    pub async fn orchestrator_calls(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(parse_orchestrator_calls(&self.metrics().await?))
    }
}

/// The sum of every sample of metric `name` in a Prometheus text exposition.
pub fn metric_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

/// Sums `orchestrator_requests_total` samples of a Prometheus text exposition by `operation` label.
pub fn parse_orchestrator_calls(text: &str) -> BTreeMap<String, u64> {
    let mut by_op = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("orchestrator_requests_total")) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let op = series
            .split_once("operation=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(|| "unknown".to_owned(), |(op, _)| op.to_owned());
        *by_op.entry(op).or_insert(0) += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    by_op
}

/// Mean orchestrator request duration in ms by operation, over the process's life.
pub fn orchestrator_mean_ms(text: &str) -> BTreeMap<String, f64> {
    let by_op = |suffix: &str| -> BTreeMap<String, f64> {
        let name = format!("orchestrator_request_duration_seconds_{suffix}");
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with(&name)) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            if let Some((_, rest)) = series.split_once("operation=\"")
                && let Some((op, _)) = rest.split_once('"')
            {
                *out.entry(op.to_owned()).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        out
    };
    let (sums, counts) = (by_op("sum"), by_op("count"));
    sums.into_iter()
        .filter_map(|(op, sum)| {
            let n = counts.get(&op).copied().filter(|n| *n > 0.0)?;
            Some((op, (sum / n * 1000.0 * 100.0).round() / 100.0))
        })
        .collect()
}

/// Calls made between two readings of [`Stack::orchestrator_calls`], by operation and in total.
pub fn calls_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> (BTreeMap<String, u64>, u64) {
    let diff: BTreeMap<String, u64> = after
        .iter()
        .map(|(op, n)| (op.clone(), n.saturating_sub(before.get(op).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    let total = diff.values().sum();
    (diff, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orchestrator_calls_are_summed_by_operation() {
        let text = "# HELP orchestrator_requests_total x\n\
            orchestrator_requests_total{code=\"200\",operation=\"get-sks-cluster\"} 3\n\
            orchestrator_requests_total{code=\"500\",operation=\"get-sks-cluster\"} 1\n\
            orchestrator_requests_total{code=\"200\",operation=\"list-instances\"} 4\n\
            orchestrator_request_duration_seconds_count{operation=\"list-instances\"} 4\n";
        let calls = parse_orchestrator_calls(text);
        assert_eq!(calls["get-sks-cluster"], 4);
        assert_eq!(calls["list-instances"], 4);
        let mut later = calls.clone();
        *later.get_mut("list-instances").unwrap() += 2;
        let (diff, total) = calls_between(&calls, &later);
        assert_eq!((diff.len(), total), (1, 2));
        assert_eq!(metric_total(text, "orchestrator_requests_total"), 8.0);
        assert_eq!(metric_total(text, "orchestrator_request_duration_seconds"), 0.0);
        let durations = "orchestrator_request_duration_seconds_sum{operation=\"list-instances\"} 0.5\n\
            orchestrator_request_duration_seconds_count{operation=\"list-instances\"} 4\n";
        assert_eq!(orchestrator_mean_ms(durations)["list-instances"], 125.0);
    }
}
