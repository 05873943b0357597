//! Simulated kubelets: every running instance of the nodepools of one SKS
//! cluster behaves, towards that cluster's Kubernetes API, like a node whose
//! kubelet runs. It registers its Node, renews its Lease, posts its status,
//! asks for a serving certificate and runs the pods bound to it (`pods`), all
//! authenticated as the node
//! (`system:node:<name>`, group `system:nodes`), with a client certificate the
//! zone issues from the cluster's control-plane CA, as a bootstrapped kubelet
//! would hold. A stopped or destroyed instance simply goes silent: its Node
//! and pods stay, and the API server's node lifecycle notices the stale Lease.
//! An instance switched sick (`PUT /admin/instance/{id}/kubelet`) keeps its
//! kubelet running (Lease renewed, pods left as they are) but reports Ready
//! `False` (`KubeletNotReady`), as a kubelet whose container runtime is down.
//!
//! One supervisor compares the zone's state with the running kubelets every
//! 500 ms and starts or stops one task per instance. Every API error is logged
//! and retried with a short backoff; nothing here can stop the zone.

mod objects;
pub mod pods;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use orchestrator::model::{InstanceState, ManagerType};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use self::objects::{CsrState, KUBELET_SERVING_SIGNER, LEASE_NAMESPACE, Machine, NODES_GROUP};
use crate::app::{App, Config};
use crate::catalog;
use crate::handlers;
use crate::http::Call;
use crate::upgrades;
use crate::world::World;

/// How often the supervisor compares the zone's instances with the running kubelets.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// Connect timeout of Kubernetes API calls, so an unreachable API server delays nothing for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read and write timeout of Kubernetes API calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Lifetime of a node's client certificate (the zone's kubeconfig maximum); renewed at half of it.
const CLIENT_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// A Node status is posted at least every this many lease intervals even when
/// nothing changed: 5 minutes at the default 10 s, kubelet's `nodeStatusReportFrequency`.
const REPORT_EVERY_LEASES: u32 = 30;

/// What the simulated kubelets run against.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kubeconfig whose current context gives the API server URL and the CA to trust it with.
    pub kubeconfig: PathBuf,
    /// The cluster whose nodes get kubelets; `None`: `default_cluster_name` if it exists, else the oldest cluster.
    pub cluster: Option<Uuid>,
    /// The cluster picked when `cluster` is `None` (the seeded one).
    pub default_cluster_name: String,
    /// How often each kubelet renews its Lease and checks its Node status.
    pub lease_interval: Duration,
}

/// Starts the supervisor of the simulated kubelets.
pub fn spawn(app: Arc<App>, options: Options) -> JoinHandle<()> {
    tracing::info!(
        kubeconfig = %options.kubeconfig.display(),
        cluster = ?options.cluster,
        lease_interval_s = options.lease_interval.as_secs_f64(),
        "simulated kubelets enabled"
    );
    tokio::spawn(supervise(app, options))
}

/// A running kubelet task; dropping it stops the kubelet (the instance went away or stopped).
struct Running {
    machine: watch::Sender<Machine>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs a problem of the supervisor once until it changes, so a missing
/// kubeconfig or cluster does not write a line twice a second.
#[derive(Default)]
struct Complaint(Option<String>);

impl Complaint {
    fn raise(&mut self, message: String) {
        if self.0.as_ref() != Some(&message) {
            tracing::warn!(problem = %message, "simulated kubelets cannot run; retrying");
            self.0 = Some(message);
        }
    }

    fn clear(&mut self) {
        if self.0.take().is_some() {
            tracing::info!("simulated kubelets: problem resolved");
        }
    }
}

async fn supervise(app: Arc<App>, options: Options) {
    let mut base: Option<kube::Config> = None;
    let mut running: BTreeMap<Uuid, Running> = BTreeMap::new();
    let mut complaint = Complaint::default();
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let desired = match app.read(|w| machines(w, &app.config, &options)) {
            Ok(desired) => desired,
            Err(message) => {
                complaint.raise(message);
                BTreeMap::new()
            }
        };
        running.retain(|id, r| {
            let keep = desired.contains_key(id);
            if !keep {
                let node = r.machine.borrow().name.clone();
                tracing::info!(%node, instance = %id, "instance no longer running: its kubelet stops (the Node stays)");
            }
            keep
        });
        for (id, machine) in desired {
            if let Some(r) = running.get(&id) {
                // A reinstall from another template changes the version the kubelet reports.
                r.machine.send_if_modified(|m| {
                    let changed = *m != machine;
                    *m = machine.clone();
                    changed
                });
                continue;
            }
            if base.is_none() {
                match load_base(&options.kubeconfig).await {
                    Ok(config) => base = Some(config),
                    Err(e) => {
                        complaint.raise(format!("{e:#}"));
                        break;
                    }
                }
            }
            let Some(base) = base.clone() else { break };
            complaint.clear();
            tracing::info!(node = %machine.name, instance = %id, "instance running: its kubelet starts");
            let (tx, rx) = watch::channel(machine);
            let kubelet = Kubelet::new(app.clone(), base, rx, options.lease_interval);
            running.insert(id, Running { machine: tx, task: tokio::spawn(kubelet.run()) });
        }
    }
}

/// The instances that run a kubelet now: running members of the instance
/// pools of the cluster's nodepools. An error says why there are none.
fn machines(world: &World, config: &Config, options: &Options) -> Result<BTreeMap<Uuid, Machine>, String> {
    let (zone, cluster) = match options.cluster {
        Some(id) => config
            .zones
            .iter()
            .find_map(|z| world.zone(z).clusters.get(&id).map(|c| (z, c)))
            .ok_or_else(|| format!("SKS cluster {id} (--kubelet-cluster) does not exist"))?,
        None => {
            let zone = &config.zones[0];
            let clusters = &world.zone(zone).clusters;
            let named =
                clusters.values().find(|c| c.cluster.spec.name.as_deref() == Some(&options.default_cluster_name));
            let oldest = || clusters.values().min_by_key(|c| (c.cluster.created_at, c.cluster.id));
            let cluster = named.or_else(oldest).ok_or_else(|| format!("zone {zone} has no SKS cluster yet"))?;
            (zone, cluster)
        }
    };
    let state = world.zone(zone);
    let mut out = BTreeMap::new();
    for np in state.nodepools.values().filter(|n| n.cluster_id == cluster.cluster.id) {
        let Some(pool) = np.nodepool.instance_pool else { continue };
        let members = state.instances.values().filter(|i| {
            i.instance.state == InstanceState::Running
                && i.instance.manager.as_ref().is_some_and(|m| m.id == pool.id && m.kind == ManagerType::InstancePool)
        });
        for rec in members {
            let i = &rec.instance;
            let kind = catalog::instance_type(i.instance_type.id, &config.zones);
            out.insert(
                i.id,
                Machine {
                    zone: zone.clone(),
                    cluster_id: cluster.cluster.id,
                    instance_id: i.id,
                    name: i.name.clone(),
                    ipv4: i.public_ip,
                    ipv6: i.ipv6_address,
                    // The version of the template it runs: after an upgrade, old members report the old one.
                    version: i
                        .template
                        .and_then(|t| upgrades::template_version(world, t.id))
                        .or_else(|| np.nodepool.version.clone())
                        .unwrap_or_else(|| cluster.cluster.version.clone()),
                    cpus: kind.as_ref().map_or(1, |t| t.cpus),
                    memory_bytes: kind.as_ref().map_or(1 << 30, |t| t.memory),
                    disk_gib: i.disk_size.unwrap_or(50),
                    ready: !rec.kubelet_not_ready,
                },
            );
        }
    }
    Ok(out)
}

/// The API server and the CA to trust it with, from the kubeconfig's current
/// context; its credentials are replaced by each node's own.
async fn load_base(path: &std::path::Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    config.auth_info = AuthInfo::default();
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    Ok(config)
}

/// The node's credentials (`system:node:<name>` in `system:nodes`), from the
/// zone's own kubeconfig endpoint, called in-process as an API client would.
fn node_credentials(app: &App, m: &Machine) -> anyhow::Result<AuthInfo> {
    let call = Call {
        zone: m.zone.clone(),
        operation: "generate-sks-cluster-kubeconfig".to_owned(),
        params: vec![("id".to_owned(), m.cluster_id.to_string())],
        query: Vec::new(),
        body: Some(json!({"user": m.user(), "groups": [NODES_GROUP], "ttl": CLIENT_CERT_TTL.as_secs()})),
    };
    let answer = handlers::dispatch(app, &call)
        .map_err(|e| anyhow::anyhow!("the zone refused the node's kubeconfig: {} {}", e.status, e.message))?;
    let encoded = answer["kubeconfig"].as_str().context("kubeconfig answer without a kubeconfig")?;
    let yaml = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)?;
    let kubeconfig = Kubeconfig::from_yaml(std::str::from_utf8(&yaml)?)?;
    kubeconfig.auth_infos.into_iter().find_map(|a| a.auth_info).context("the node's kubeconfig has no user")
}

/// When a step is due next, with a growing delay after failures.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    failures: u32,
}

impl Due {
    fn now() -> Self {
        Due { at: Instant::now(), failures: 0 }
    }

    fn is_due(&self, now: Instant) -> bool {
        now >= self.at
    }

    fn done(&mut self, now: Instant, period: Duration) {
        *self = Due { at: now + period, failures: 0 };
    }

    /// Retries at the next reconcile first, then backs off up to `cap`, so an
    /// unreachable API server costs a log line every `cap`, not every 500 ms.
    fn failed(&mut self, now: Instant, cap: Duration) {
        self.failures = self.failures.saturating_add(1);
        let delay = RECONCILE_EVERY.saturating_mul(1 << self.failures.min(8).saturating_sub(1));
        self.at = now + delay.min(cap.max(RECONCILE_EVERY));
    }
}

/// Where the serving certificate request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Serving {
    /// Not known yet whether one exists: look before asking.
    Unknown,
    /// This CSR is pending or approved and not signed yet.
    Waiting(String),
    /// Issued, or refused: nothing more to do (a refused one is not asked again).
    Settled,
}

/// A task stopped when its owner is dropped (the kubelet's pod worker goes with the kubelet).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A node's client certificate identity and when it was issued.
struct Identity {
    client: kube::Client,
    issued: Instant,
}

/// One simulated kubelet.
struct Kubelet {
    app: Arc<App>,
    base: kube::Config,
    machine: watch::Receiver<Machine>,
    lease_interval: Duration,
    /// A new boot id per start, as a reboot gives a real node one.
    boot_id: String,
    identity: Option<Identity>,
    registered: bool,
    node_uid: Option<String>,
    /// The last Lease written, reused for the next renewal as kubelet does (one PUT per renewal).
    lease: Option<Lease>,
    serving: Serving,
    register_due: Due,
    lease_due: Due,
    status_due: Due,
    csr_due: Due,
    last_report: Option<Instant>,
    /// Runs the pods bound to the node, once it is registered.
    pods: Option<AbortOnDrop>,
}

impl Kubelet {
    fn new(app: Arc<App>, base: kube::Config, machine: watch::Receiver<Machine>, lease_interval: Duration) -> Self {
        Kubelet {
            app,
            base,
            machine,
            lease_interval,
            boot_id: Uuid::new_v4().to_string(),
            identity: None,
            registered: false,
            node_uid: None,
            lease: None,
            serving: Serving::Unknown,
            register_due: Due::now(),
            lease_due: Due::now(),
            status_due: Due::now(),
            csr_due: Due::now(),
            last_report: None,
            pods: None,
        }
    }

    async fn run(mut self) {
        loop {
            if self.machine.has_changed().unwrap_or(false) {
                // A new version or readiness is posted at once, not at the next report.
                self.status_due = Due::now();
            }
            let m = self.machine.borrow_and_update().clone();
            self.reconcile(&m).await;
            tokio::time::sleep_until(self.next_wake()).await;
        }
    }

    /// The next time a step is due, at most [`RECONCILE_EVERY`] away; steps
    /// that cannot run now (all while registration or credentials back off, a
    /// settled CSR) do not count, or their past due times would make the loop spin.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + RECONCILE_EVERY;
        let mut consider = |due: Due| next = next.min(due.at);
        if !self.registered || !self.register_due.is_due(now) {
            consider(self.register_due);
            return next;
        }
        consider(self.lease_due);
        consider(self.status_due);
        if self.serving != Serving::Settled {
            consider(self.csr_due);
        }
        next
    }

    async fn reconcile(&mut self, m: &Machine) {
        let now = Instant::now();
        // Backing off after failing to register or to get credentials: nothing else can run.
        if !self.register_due.is_due(now) {
            return;
        }
        let client = match self.client(m) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(node = %m.name, error = format!("{e:#}"), "getting the node's credentials failed; retrying");
                self.register_due.failed(now, self.lease_interval);
                return;
            }
        };
        if !self.registered
            && let Err(e) = self.register(&client, m).await
        {
            tracing::warn!(node = %m.name, error = format!("{e:#}"), "registering the node failed; retrying");
            self.register_due.failed(now, self.lease_interval);
            return;
        }
        self.register_due.done(now, Duration::ZERO);
        if self.pods.is_none() {
            self.pods = Some(AbortOnDrop(tokio::spawn(pods::run(client.clone(), m.clone()))));
        }
        if self.lease_due.is_due(now) {
            match self.renew_lease(&client, m).await {
                Ok(()) => self.lease_due.done(now, self.lease_interval),
                Err(e) => {
                    tracing::warn!(node = %m.name, error = format!("{e:#}"), "renewing the node lease failed; retrying");
                    self.lease_due.failed(now, self.lease_interval);
                }
            }
        }
        if self.status_due.is_due(now) {
            match self.sync_status(&client, m).await {
                Ok(()) => self.status_due.done(now, self.lease_interval),
                Err(e) => {
                    tracing::warn!(node = %m.name, error = format!("{e:#}"), "posting the node status failed; retrying");
                    self.status_due.failed(now, self.lease_interval);
                }
            }
        }
        if self.serving != Serving::Settled && self.csr_due.is_due(now) {
            match self.request_serving_certificate(&client, m).await {
                Ok(()) => self.csr_due.done(now, self.lease_interval),
                Err(e) => {
                    tracing::warn!(node = %m.name, error = format!("{e:#}"), "serving certificate request failed; retrying");
                    self.csr_due.failed(now, self.lease_interval);
                }
            }
        }
    }

    /// A client authenticated as the node, with a fresh certificate once the
    /// current one is half way through its life.
    fn client(&mut self, m: &Machine) -> anyhow::Result<kube::Client> {
        if let Some(id) = &self.identity
            && id.issued.elapsed() < CLIENT_CERT_TTL / 2
        {
            return Ok(id.client.clone());
        }
        let mut config = self.base.clone();
        config.auth_info = node_credentials(&self.app, m)?;
        let client = kube::Client::try_from(config).context("building the node's Kubernetes client")?;
        self.identity = Some(Identity { client: client.clone(), issued: Instant::now() });
        Ok(client)
    }

    /// Records the Node as registered; a new uid (the Node was recreated) voids the cached Lease's owner.
    fn adopt(&mut self, node: &Node) {
        self.registered = true;
        if node.metadata.uid != self.node_uid {
            self.node_uid = node.metadata.uid.clone();
            self.lease = None;
        }
    }

    /// Creates the Node unless it exists (a kubelet never deletes its Node).
    async fn register(&mut self, client: &kube::Client, m: &Machine) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        if let Some(node) = nodes.get_opt(&m.name).await? {
            tracing::info!(node = %m.name, "node already registered");
            self.adopt(&node);
            // Its status is from an earlier boot (or a controller's): post ours now.
            self.status_due = Due::now();
            return Ok(());
        }
        match nodes.create(&PostParams::default(), &objects::node(m, &self.boot_id, Timestamp::now())).await {
            Ok(node) => {
                tracing::info!(node = %m.name, instance = %m.instance_id, "registered the node");
                self.adopt(&node);
                if objects::condition_true(node.status.as_ref(), "Ready") {
                    self.last_report = Some(Instant::now());
                    self.status_due.done(Instant::now(), self.lease_interval);
                } else {
                    // The API server dropped the status sent at create: post it through the subresource.
                    self.status_due = Due::now();
                }
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                self.registered = true;
                self.status_due = Due::now();
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Renews (or creates) `kube-node-lease/<node>`.
    async fn renew_lease(&mut self, client: &kube::Client, m: &Machine) -> anyhow::Result<()> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
        // Taken, so a failed write (a conflict, say) makes the next renewal read the Lease afresh.
        let current = match self.lease.take() {
            Some(lease) => Some(lease),
            None => leases.get_opt(&m.name).await?,
        };
        let lease = objects::renewed_lease(current, &m.name, self.node_uid.as_deref(), Timestamp::now());
        let stored = if lease.metadata.resource_version.is_some() {
            leases.replace(&m.name, &PostParams::default(), &lease).await?
        } else {
            leases.create(&PostParams::default(), &lease).await?
        };
        self.lease = Some(stored);
        Ok(())
    }

    /// Posts the node status when it differs from what the API server has
    /// (a controller marked it Unknown, a new boot) or a report is due.
    async fn sync_status(&mut self, client: &kube::Client, m: &Machine) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let Some(node) = nodes.get_opt(&m.name).await? else {
            tracing::warn!(node = %m.name, "the Node was deleted; registering it again");
            self.registered = false;
            self.register_due = Due::now();
            return Ok(());
        };
        self.adopt(&node);
        let desired = objects::node_status(m, &self.boot_id, node.status.as_ref(), Timestamp::now());
        let report_due = self.last_report.is_none_or(|t| t.elapsed() >= self.lease_interval * REPORT_EVERY_LEASES);
        if !report_due && !objects::status_differs(node.status.as_ref(), &desired) {
            return Ok(());
        }
        let patch = Patch::Strategic(json!({ "status": desired }));
        nodes.patch_status(&m.name, &PatchParams::default(), &patch).await?;
        if objects::condition_true(node.status.as_ref(), "Ready") != m.ready {
            tracing::info!(node = %m.name, ready = m.ready, "posted a new Ready condition");
        }
        self.last_report = Some(Instant::now());
        Ok(())
    }

    /// Asks for a kubelet serving certificate once: adopts a pending or
    /// approved CSR of this node if there is one, gives up on a refused one.
    async fn request_serving_certificate(&mut self, client: &kube::Client, m: &Machine) -> anyhow::Result<()> {
        let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
        match self.serving.clone() {
            Serving::Settled => {}
            Serving::Unknown => {
                let selector = format!("spec.signerName={KUBELET_SERVING_SIGNER}");
                let list = csrs.list(&ListParams::default().fields(&selector)).await?;
                let user = m.user();
                let mine: Vec<_> =
                    list.items.into_iter().filter(|c| c.spec.username.as_deref() == Some(&user)).collect();
                if let Some(live) = mine.iter().find(|c| !matches!(objects::csr_state(c), CsrState::Refused(_))) {
                    let name = live.metadata.name.clone().unwrap_or_default();
                    tracing::info!(node = %m.name, csr = %name, "found this node's serving certificate request");
                    self.serving = Serving::Waiting(name);
                    self.observe(m, live);
                } else if let Some(refused) = mine.first() {
                    self.observe(m, refused);
                } else {
                    let (csr, _key) = objects::serving_csr(m)?;
                    // The key is not kept: the simulated kubelet serves nothing with it.
                    let created = csrs.create(&PostParams::default(), &csr).await?;
                    let name = created.metadata.name.clone().unwrap_or_default();
                    tracing::info!(node = %m.name, csr = %name, "requested a serving certificate");
                    self.serving = Serving::Waiting(name);
                }
            }
            Serving::Waiting(name) => match csrs.get_opt(&name).await? {
                Some(csr) => self.observe(m, &csr),
                None => {
                    tracing::info!(node = %m.name, csr = %name, "the serving certificate request was deleted; asking again");
                    self.serving = Serving::Unknown;
                }
            },
        }
        Ok(())
    }

    /// Settles on an issued or refused CSR.
    fn observe(&mut self, m: &Machine, csr: &CertificateSigningRequest) {
        let name = csr.metadata.name.as_deref().unwrap_or_default();
        match objects::csr_state(csr) {
            CsrState::Pending | CsrState::Approved => {}
            CsrState::Issued => {
                tracing::info!(node = %m.name, csr = %name, "serving certificate issued");
                self.serving = Serving::Settled;
            }
            CsrState::Refused(why) => {
                tracing::warn!(node = %m.name, csr = %name, reason = %why, "serving certificate refused; not asking again");
                self.serving = Serving::Settled;
            }
        }
    }
}
