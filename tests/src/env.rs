//! The end-to-end stack, assembled one way for every test: a zone (seeded
//! with cluster `demo` by default), the cluster's Kubernetes API (the
//! stand-in, or real binaries with `KUBE_ASSETS`) trusting the zone
//! cluster's CAs, the zone's kubelets registering in it, sks-ccm, and
//! sks-apiserver (behind the API through an APIService when there is one,
//! else served directly). Each part is optional; everything started is
//! stopped when the environment is dropped.
//!
//! ```no_run
//! # async fn t() {
//! let env = sks_e2e::env::TestEnv::builder().kubelets().ccm(&[]).ready_nodes(3).start().await;
//! env.kubectl().ok(&["get", "nodes"]);
//! # }
//! ```

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use uuid::Uuid;

use crate::apiserver::ApiServer;
use crate::ccm::Ccm;
use crate::kubeapi::{KubeApi, KubeOptions, node_policy_rules, policy};
use crate::kubectl::Kubectl;
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
    /// sks-apiserver, if started.
    pub sks: Option<ApiServer>,
}

/// What to start.
#[derive(Default)]
pub struct Builder {
    zone: ZoneOptions,
    kube: Option<KubeOptions>,
    kubelets: bool,
    ccm: Option<Vec<String>>,
    sks: Option<Vec<String>>,
    ready_nodes: Option<usize>,
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

    /// sks-apiserver with extra `args`: behind the API when there is one, else served directly.
    pub fn apiserver(mut self, args: &[&str]) -> Self {
        self.sks = Some(owned(args));
        self
    }

    /// Waits, once started, until `n` Nodes are Ready and initialized (providerID set).
    pub fn ready_nodes(mut self, n: usize) -> Self {
        self.ready_nodes = Some(n);
        self
    }

    /// Starts everything asked for.
    pub async fn start(self) -> TestEnv {
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
        let ccm = match (&self.ccm, &kube) {
            (Some(args), Some(kube)) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(Ccm::start(&zone, kube, &cluster.to_string(), &args))
            }
            _ => None,
        };
        let sks = match (&self.sks, &kube) {
            (Some(args), Some(kube)) => {
                let kubeconfig = kube.kubeconfig.display().to_string();
                let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
                all.extend(args.iter().map(String::as_str));
                let sks = ApiServer::start_behind(&zone, &cluster.to_string(), &all, &kube.cert_dir);
                sks.register(&kube.kubectl()).await;
                Some(sks)
            }
            (Some(args), None) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let sks = ApiServer::start(&zone, &cluster.to_string(), &args);
                let k = sks.kubectl();
                wait_for("sks-apiserver to be ready", Duration::from_secs(30), || {
                    let k = k.clone();
                    async move { k.run(&["get", "--raw", "/readyz"]).status.success().then_some(()) }
                })
                .await;
                Some(sks)
            }
            (None, _) => None,
        };
        let env = TestEnv { zone, client, cluster, kube, ccm, sks };
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

    /// sks-apiserver.
    pub fn sks(&self) -> &ApiServer {
        self.sks.as_ref().expect("the environment has sks-apiserver (TestEnv::builder().apiserver(..))")
    }

    /// `kubectl` as the admin: of the Kubernetes API, or of sks-apiserver served directly.
    pub fn kubectl(&self) -> Kubectl {
        match (&self.kube, &self.sks) {
            (Some(kube), _) => kube.kubectl(),
            (None, Some(sks)) => sks.kubectl(),
            (None, None) => panic!("the environment has neither a Kubernetes API nor sks-apiserver"),
        }
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
