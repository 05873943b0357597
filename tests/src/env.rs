//! The end-to-end stack, assembled one way for every test: a zone (seeded
//! with cluster `demo` by default), the cluster's Kubernetes API (the
//! stand-in, or real binaries with `KUBE_ASSETS`) trusting the zone
//! cluster's CAs, the zone's kubelets registering in it, sks-ccm, and
//! sks-apiserver replicas (behind the API through an APIService when there is
//! one, else served directly). Each part is optional; everything started is
//! stopped when the environment is dropped. Components whose flags depend on
//! the running stack, or that a test starts again, come from the same
//! environment ([`TestEnv::start_apiserver`], [`TestEnv::start_ccm`]).
//!
//! ```no_run
//! # async fn t() {
//! let env = sks_e2e::env::TestEnv::builder().kubelets().ccm(&[]).ready_nodes(3).start().await;
//! env.kubectl().ok(&["get", "nodes"]);
//! # }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use uuid::Uuid;

use crate::apiserver::ApiServer;
use crate::ccm::Ccm;
use crate::kubeapi::{KubeApi, KubeOptions, node_policy_rules, policy};
use crate::kubectl::Kubectl;
use crate::logs::Logs;
use crate::wait_for;
use crate::zone::{Zone, ZoneOptions};

/// A running stack.
pub struct TestEnv {
    /// The zone.
    pub zone: Zone,
    /// A client of the zone with fast retries.
    pub client: orchestrator::Client,
    /// The seeded (first) cluster.
    pub cluster: Uuid,
    /// The cluster's Kubernetes API, if started.
    pub kube: Option<KubeApi>,
    /// sks-ccm, if started.
    pub ccm: Option<Ccm>,
    /// The sks-apiserver replicas asked of the builder, in its order.
    pub apiservers: Vec<ApiServer>,
    logs: Logs,
}

/// One sks-apiserver replica.
#[derive(Debug, Clone, Default)]
pub struct ApiServerOptions {
    /// Extra arguments.
    pub args: Vec<String>,
    /// Reached at its own URL, trusting its own CAs, even when there is a Kubernetes
    /// API (by default it is then registered behind that API through the APIService).
    pub direct: bool,
    /// Its `--kubeconfig`.
    pub kubeconfig: ApiAccess,
}

impl ApiServerOptions {
    /// A replica with extra `args`.
    pub fn args(args: &[&str]) -> Self {
        ApiServerOptions { args: owned(args), ..Default::default() }
    }
}

/// What sks-apiserver is given as `--kubeconfig`, through which it reviews tokens
/// and access, keeps metadata in ConfigMaps (shared by replicas) and reads Nodes.
#[derive(Debug, Clone, Default)]
pub enum ApiAccess {
    /// The API's admin kubeconfig when there is an API; none without one.
    #[default]
    Admin,
    /// None: only system:masters may use sks-apiserver, and it keeps metadata in a file.
    Without,
    /// This kubeconfig (e.g. of a proxy in front of the API).
    Kubeconfig(PathBuf),
}

/// What to start.
#[derive(Default)]
pub struct Builder {
    zone: ZoneOptions,
    kube: Option<KubeOptions>,
    kubelets: bool,
    ccm: Option<Vec<String>>,
    apiservers: Vec<ApiServerOptions>,
    ready_nodes: Option<usize>,
    logs: Option<Logs>,
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

impl Builder {
    /// The zone's options (default: seeded).
    pub fn zone(mut self, options: ZoneOptions) -> Self {
        self.zone = options;
        self
    }

    /// A Kubernetes API with `options` (its CAs are the zone cluster's).
    pub fn kube(mut self, options: KubeOptions) -> Self {
        self.kube = Some(options);
        self
    }

    /// The zone's kubelets register in the API (which they get, with the rights kube-apiserver gives kubelets).
    pub fn kubelets(mut self) -> Self {
        self.kubelets = true;
        self.kube.get_or_insert_with(KubeOptions::default);
        self
    }

    /// sks-ccm with extra `args` (against the API, which it implies).
    pub fn ccm(mut self, args: &[&str]) -> Self {
        self.ccm = Some(owned(args));
        self.kube.get_or_insert_with(KubeOptions::default);
        self
    }

    /// An sks-apiserver replica with extra `args`: behind the API when there is one, else served directly.
    pub fn apiserver(self, args: &[&str]) -> Self {
        self.apiserver_with(ApiServerOptions::args(args))
    }

    /// An sks-apiserver replica as `options` say (call again for more replicas; the
    /// APIService names one, so at most one replica is behind the API).
    pub fn apiserver_with(mut self, options: ApiServerOptions) -> Self {
        self.apiservers.push(options);
        self
    }

    /// Where the zone, sks-ccm and sks-apiserver log (default: at `warn` to the test's
    /// output; the Kubernetes API logs there whatever this says).
    pub fn logs(mut self, logs: Logs) -> Self {
        self.logs = Some(logs);
        self
    }

    /// Waits, once started, until `n` Nodes are Ready and initialized (providerID set).
    pub fn ready_nodes(mut self, n: usize) -> Self {
        self.ready_nodes = Some(n);
        self
    }

    /// Starts everything asked for.
    pub async fn start(mut self) -> TestEnv {
        if let Some(logs) = &self.logs {
            self.zone.logs = logs.clone();
        }
        let logs = self.logs.unwrap_or_default();
        let mut zone = Zone::start(self.zone);
        let client = zone.client().await;
        let cluster = client.list_sks_clusters().await.expect("listing clusters").first().map(|c| c.id);
        let cluster = cluster.expect("a seeded zone has a cluster (ZoneOptions::seed)");
        let kube = match self.kube {
            Some(mut options) => {
                options.zone_cluster = Some((zone.endpoint(), cluster.to_string()));
                if self.kubelets {
                    let mut rules: Vec<serde_json::Value> = match &options.policy {
                        Some(p) => {
                            serde_json::from_str::<serde_json::Value>(p).expect("harness policies are JSON")["rules"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default()
                        }
                        None => Vec::new(),
                    };
                    rules.extend(node_policy_rules());
                    options.policy = Some(policy(rules));
                }
                Some(KubeApi::start(options).await)
            }
            None => None,
        };
        if let (true, Some(kube)) = (self.kubelets, &kube) {
            zone.attach_kubelets(&kube.kubeconfig);
        }
        let mut env = TestEnv { zone, client, cluster, kube, ccm: None, apiservers: Vec::new(), logs };
        if let Some(args) = &self.ccm {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.ccm = Some(env.start_ccm(&args));
        }
        let behind = self.apiservers.iter().filter(|o| !o.direct).count();
        assert!(env.kube.is_none() || behind <= 1, "one APIService: at most one replica behind the API");
        for options in &self.apiservers {
            let sks = env.start_apiserver(options).await;
            env.apiservers.push(sks);
        }
        if let Some(n) = self.ready_nodes {
            env.wait_ready_nodes(n).await;
        }
        env
    }
}

/// Nodes that are Ready and initialized by sks-ccm (a providerID, no uninitialized taint).
pub async fn ready_initialized(nodes: &Api<Node>) -> usize {
    let Ok(list) = nodes.list(&Default::default()).await else { return 0 };
    list.items
        .iter()
        .filter(|n| {
            let spec = n.spec.as_ref();
            spec.and_then(|s| s.provider_id.as_ref()).is_some()
                && !spec
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|ts| ts.iter().any(|t| t.key == sks_keys::taint::UNINITIALIZED))
        })
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

impl TestEnv {
    /// What to start: a seeded zone, and what the builder adds.
    pub fn builder() -> Builder {
        Builder { zone: ZoneOptions { seed: true, ..Default::default() }, ..Default::default() }
    }

    /// The Kubernetes API.
    pub fn kube(&self) -> &KubeApi {
        self.kube.as_ref().expect("the environment has a Kubernetes API (TestEnv::builder().kube(..))")
    }

    /// The Kubernetes API, to stop it.
    pub fn kube_mut(&mut self) -> &mut KubeApi {
        self.kube.as_mut().expect("the environment has a Kubernetes API (TestEnv::builder().kube(..))")
    }

    /// sks-ccm.
    pub fn ccm(&self) -> &Ccm {
        self.ccm.as_ref().expect("the environment has sks-ccm (TestEnv::builder().ccm(..))")
    }

    /// sks-apiserver (the first replica).
    pub fn sks(&self) -> &ApiServer {
        self.apiservers.first().expect("the environment has sks-apiserver (TestEnv::builder().apiserver(..))")
    }

    /// sks-apiserver (the first replica), to stop it.
    pub fn sks_mut(&mut self) -> &mut ApiServer {
        self.apiservers.first_mut().expect("the environment has sks-apiserver (TestEnv::builder().apiserver(..))")
    }

    /// Starts sks-apiserver (the first replica) again on the same port with the same state.
    pub fn restart_apiserver(&mut self) {
        let sks = self.apiservers.first_mut().expect("the environment has sks-apiserver");
        sks.restart(&self.zone);
    }

    /// `kubectl` as the admin: of the Kubernetes API, or of sks-apiserver served directly.
    pub fn kubectl(&self) -> Kubectl {
        match (&self.kube, self.apiservers.first()) {
            (Some(kube), _) => kube.kubectl(),
            (None, Some(sks)) => sks.kubectl(),
            (None, None) => panic!("the environment has neither a Kubernetes API nor sks-apiserver"),
        }
    }

    /// Starts another sks-ccm for the cluster against the API with extra `args`
    /// (a replica, or one started again), owned by the caller.
    pub fn start_ccm(&self, args: &[&str]) -> Ccm {
        Ccm::start_logging(&self.zone, self.kube(), &self.cluster.to_string(), args, &self.logs)
    }

    /// Starts an sks-apiserver replica for the cluster as `options` say, owned by the
    /// caller: registered behind the API through the APIService (once Available), or
    /// served directly (once it answers /readyz).
    pub async fn start_apiserver(&self, options: &ApiServerOptions) -> ApiServer {
        let cluster = self.cluster.to_string();
        let kubeconfig = match (&options.kubeconfig, &self.kube) {
            (ApiAccess::Admin, Some(kube)) => Some(kube.kubeconfig.clone()),
            (ApiAccess::Kubeconfig(path), _) => Some(path.clone()),
            (ApiAccess::Admin | ApiAccess::Without, _) => None,
        };
        let kubeconfig = kubeconfig.map(|p| p.display().to_string());
        let mut args: Vec<&str> = kubeconfig.iter().flat_map(|k| ["--kubeconfig", k.as_str()]).collect();
        args.extend(options.args.iter().map(String::as_str));
        let behind = self.kube.as_ref().filter(|_| !options.direct);
        let certs = behind.map(|kube| kube.cert_dir.as_path());
        let sks = ApiServer::start_with(&self.zone, &cluster, &args, certs, &self.logs);
        match behind {
            Some(kube) => sks.register(&kube.kubectl()).await,
            None => sks.kubectl().wait_ready("sks-apiserver", Duration::from_secs(30)).await,
        }
        sks
    }

    /// Nodes that are Ready and initialized by sks-ccm.
    pub async fn ready_nodes(&self) -> usize {
        ready_initialized(&Api::all(self.kube().client().await)).await
    }

    /// Waits until `n` Nodes are Ready and initialized (at most 60 s).
    pub async fn wait_ready_nodes(&self, n: usize) {
        wait_for(&format!("{n} Ready, initialized nodes"), Duration::from_secs(60), || async {
            (self.ready_nodes().await == n).then_some(())
        })
        .await;
    }
}
