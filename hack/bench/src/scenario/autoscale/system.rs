//! The system the scale-up and scale-down phases drive, on loopback: sks-zone
//! (the cloud; its instances boot for a while, then run a simulated kubelet),
//! kube-standin (the cluster's Kubernetes API, with a scheduler), sks-ccm
//! (initializes the Nodes, puts the nodepool labels on them, deletes Nodes of
//! removed instances), and sks-apiserver with the autoscaler, which reaches
//! the zone through a recording proxy: every orchestrator call it makes is
//! timestamped on arrival.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use orchestrator::model::InstanceFilter;
use serde_json::Value;
use sks_e2e::apiserver::ApiServer;
use sks_e2e::ccm::Ccm;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::proxy::Proxy;
use sks_e2e::zone::{Zone, ZoneOptions};
use uuid::Uuid;

use super::Params;
use super::calls::Call;
use crate::procfs::Proc;
use crate::scenario::lbs::kube::{self, Kube};
use crate::stack::{NODEPOOLS, control_client};

/// sks-apiserver as the admin reaches it.
pub struct Sks {
    url: String,
    http: reqwest::Client,
}

/// The running system; dropped in declaration order (sks-apiserver first, the zone last).
pub struct System {
    _sks: ApiServer,
    /// sks-apiserver's API.
    pub sks: Sks,
    _ccm: Ccm,
    _kube: KubeApi,
    zone: Zone,
    proxy: Proxy,
    /// The seeded cluster.
    pub cluster: Uuid,
    /// The Kubernetes API as the admin.
    pub kube: Kube,
    /// The sks-apiserver process.
    pub sks_proc: Proc,
}

impl Sks {
    /// The admin's access to `sks`.
    pub fn of(sks: &ApiServer) -> anyhow::Result<Sks> {
        Ok(Sks { url: sks.url.clone(), http: control_client(&sks.pki)? })
    }

    /// Waits until it lists the seeded nodepool.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match self.send("GET", NODEPOOLS, None).await {
                Ok((200, list)) if list["items"].as_array().is_some_and(|i| !i.is_empty()) => return Ok(()),
                Ok((status, body)) => last = format!("{status}: {body}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("sks-apiserver did not list the seeded nodepool within {timeout:?}: {last}")
    }

    /// Sends `method path` to sks-apiserver as the admin (a merge patch for PATCH): status and JSON answer.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        kube::send(&self.http, &format!("{}{path}", self.url), method, body).await
    }

    /// sks-apiserver's /metrics.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self.http.get(format!("{}/metrics", self.url)).send().await?.error_for_status()?;
        Ok(resp.text().await?)
    }

    /// Creates NodePool `body` through sks-apiserver; its orchestrator id.
    pub async fn create_pool(&self, body: &Value) -> anyhow::Result<Uuid> {
        let (status, answer) = self.send("POST", NODEPOOLS, Some(body)).await?;
        if status != 201 && status != 200 {
            bail!("creating NodePool {}: {status}: {answer}", body["metadata"]["name"]);
        }
        answer["metadata"]["uid"].as_str().and_then(|u| u.parse().ok()).context("the new NodePool's uid")
    }

    /// Scales NodePool `name` to `replicas` by hand, through sks-apiserver (which refreshes its cache at once).
    pub async fn scale(&self, name: &str, replicas: i64) -> anyhow::Result<()> {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        let (status, answer) = self.send("PATCH", &format!("{NODEPOOLS}/{name}"), Some(&patch)).await?;
        if status != 200 {
            bail!("scaling NodePool {name} to {replicas}: {status}: {answer}");
        }
        Ok(())
    }
}

impl System {
    /// Starts everything, sks-apiserver with `p`'s autoscaler flags.
    pub async fn start(p: &Params) -> anyhow::Result<System> {
        eprintln!("starting sks-zone, kube-standin, sks-ccm and sks-apiserver from {}", sks_e2e::bin_dir().display());
        let extra = [
            "--seed-size=1",
            "--nlb-dataplane=false",
            // Kubelets renew their Lease every second, so a removed instance's Node is NotReady after the grace below.
            "--kubelet-lease-interval-seconds=1",
        ];
        let options = ZoneOptions {
            seed: true,
            boot_delay_ms: p.boot_delay_ms,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            logs: p.logs.clone(),
            ..Default::default()
        };
        let mut zone = Zone::start(options);
        let client = zone.client().await;
        let cluster = client.list_sks_clusters().await?.first().context("the seeded cluster")?.id;
        let kube_api =
            KubeApi::start(KubeOptions { node_grace_seconds: Some(3), ..KubeOptions::for_kubelets_of(&zone, cluster) })
                .await;
        zone.attach_kubelets(&kube_api.kubeconfig);
        let ccm =
            Ccm::start_logging(&zone, &kube_api, &cluster.to_string(), &["--node-sync-period-seconds", "2"], &p.logs);
        let proxy = Proxy::start_in_place_of(&zone.url).await;
        let kubeconfig = kube_api.kubeconfig.display().to_string();
        let mut args = vec!["--kubeconfig", kubeconfig.as_str()];
        args.extend(p.apiserver_args.iter().map(String::as_str));
        let sks = ApiServer::start_through(&zone, &format!("{}/v2", proxy.url), &cluster.to_string(), &args, &p.logs);
        let sks_proc = Proc::find_child("sks-apiserver", &sks.dir().display().to_string())?;
        let system = System {
            sks: Sks::of(&sks)?,
            kube: Kube::new(&kube_api.url, &kube_api.cert_dir)?,
            _sks: sks,
            _ccm: ccm,
            _kube: kube_api,
            zone,
            proxy,
            cluster,
            sks_proc,
        };
        system.sks.wait_ready(Duration::from_secs(60)).await?;
        Ok(system)
    }

    /// A mark in the orchestrator calls: those after it are [`System::calls_from`] it.
    pub fn mark(&self) -> usize {
        self.proxy.count()
    }

    /// The orchestrator calls sks-apiserver made after `mark`.
    pub fn calls_from(&self, mark: usize) -> Vec<Call> {
        self.proxy.exchanges_from(mark).iter().map(Call::of).collect()
    }

    /// Scales nodepool `id` to `size` through the zone directly, as the exo CLI would.
    pub async fn scale_in_zone(&self, id: Uuid, size: i64) -> anyhow::Result<()> {
        self.zone.client().await.scale_sks_nodepool(self.cluster, id, size).await?;
        Ok(())
    }

    /// The names of nodepool `id`'s instances (its Nodes' names), asked of the zone directly.
    pub async fn instances(&self, id: Uuid) -> anyhow::Result<Vec<String>> {
        let client = self.zone.client().await;
        let np = client.get_sks_nodepool(self.cluster, id).await?;
        let pool = np.instance_pool.context("the nodepool's instance pool")?.id;
        let filter = InstanceFilter { manager_id: Some(pool), ..Default::default() };
        Ok(client.list_instances(&filter).await?.into_iter().map(|i| i.name).collect())
    }
}
