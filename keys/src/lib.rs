//! The keys the binaries, the local zone and the tests agree on: one
//! definition each, so a key cannot drift between the writer and the reader.
//! No dependencies, so every crate can use it.

/// Labels on Nodes.
pub mod label {
    /// The nodepool a Node's instance belongs to (set by sks-ccm, read by
    /// sks-apiserver, the load balancer controller and the autoscaler).
    pub const NODEPOOL_ID: &str = "node.exoscale.net/nodepool-id";
    /// A nodepool label (propagated to its Nodes): `"false"` opts the nodepool out of auto-healing.
    pub const AUTO_HEAL: &str = "node.exoscale.net/auto-heal";
    /// The instance type (`standard.medium`), as every CCM writes it.
    pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
    /// The region: the zone's name (one zone per cluster).
    pub const REGION: &str = "topology.kubernetes.io/region";
    /// The zone.
    pub const ZONE: &str = "topology.kubernetes.io/zone";
    /// The Node's name, as kubelet sets it.
    pub const HOSTNAME: &str = "kubernetes.io/hostname";
    /// The operating system (`linux`), as kubelet sets it.
    pub const OS: &str = "kubernetes.io/os";
    /// The CPU architecture (`amd64`), as kubelet sets it.
    pub const ARCH: &str = "kubernetes.io/arch";
    /// The deprecated operating system label kubelet still sets.
    pub const BETA_OS: &str = "beta.kubernetes.io/os";
    /// The deprecated CPU architecture label kubelet still sets.
    pub const BETA_ARCH: &str = "beta.kubernetes.io/arch";
}

/// Annotations on Nodes and Services.
pub mod annotation {
    /// When auto-heal rebooted the Node's instance (RFC 3339).
    pub const AUTO_HEAL_REBOOTED_AT: &str = "node.exoscale.net/auto-heal-rebooted-at";
    /// An auto-heal replacement under way, `<nodepool id>:<size>`, recorded before the
    /// pool grows to one more and the instance is evicted: a retry finishes the same
    /// replacement, and the Node, once its instance is gone, is deleted only after its
    /// pool is back to at least that size.
    pub const AUTO_HEAL_REPLACING: &str = "node.exoscale.net/auto-heal-replacing";
    /// An upgrade roll replacing the Node, `<nodepool id>:<size to restore>`, written
    /// before its instance is evicted (like [`AUTO_HEAL_REPLACING`]): the Node is on its
    /// way out and its replacement on its way in, so the autoscaler neither removes it
    /// nor counts it as capacity.
    pub const UPGRADE_REPLACING: &str = "node.exoscale.net/upgrade-replacing";
    /// A scale-down under way, `<nodepool id>:<size before>`, recorded on the Node
    /// (with the ToBeDeletedByClusterAutoscaler taint and the cordon) before its
    /// pods are evicted: after a restart the autoscaler finishes the removal if
    /// the instance is gone, or puts the Node back in service if it is not.
    pub const SCALE_DOWN_REMOVING: &str = "node.exoscale.net/scale-down-removing";
    /// Cluster-autoscaler's Node annotation: `"true"` keeps the Node from ever being scaled down.
    pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
    /// Cluster-autoscaler's Pod annotation: `"true"` lets scale-down evict a Pod it would
    /// otherwise keep (bare, kube-system, local storage); `"false"` keeps its Node.
    pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
    /// Cluster-autoscaler's Pod annotation: comma-separated names of the Pod's local
    /// volumes (emptyDir, hostPath) that do not keep its Node from being scaled down.
    pub const SAFE_TO_EVICT_LOCAL_VOLUMES: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
    /// Cluster-autoscaler's Pod annotation: `"true"` treats the Pod as a DaemonSet Pod.
    pub const DAEMONSET_POD: &str = "cluster-autoscaler.kubernetes.io/daemonset-pod";
    /// Set by kubelet on the mirror Pod of a static Pod.
    pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
    /// The prefix of the Exoscale CCM's load balancer annotations, which sks-ccm reads.
    pub const LB_PREFIX: &str = "service.beta.kubernetes.io/exoscale-loadbalancer-";
    /// `kubectl apply`'s record of the last applied object.
    pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    /// The load balancer annotations, by suffix of [`LB_PREFIX`].
    pub mod lb {
        /// The NLB's id, written back after creation.
        pub const ID: &str = "id";
        /// The NLB's name.
        pub const NAME: &str = "name";
        /// The NLB's description.
        pub const DESCRIPTION: &str = "description";
        /// `"true"`: the NLB is managed elsewhere.
        pub const EXTERNAL: &str = "external";
        /// The NLB service's name (one-port Services).
        pub const SERVICE_NAME: &str = "service-name";
        /// The NLB service's description (one-port Services).
        pub const SERVICE_DESCRIPTION: &str = "service-description";
        /// The target instance pool.
        pub const SERVICE_INSTANCEPOOL_ID: &str = "service-instancepool-id";
        /// The target nodepool, by name.
        pub const SERVICE_SKS_NODEPOOL_NAME: &str = "service-sks-nodepool-name";
        /// The cluster of [`SERVICE_SKS_NODEPOOL_NAME`].
        pub const SKS_CLUSTER_NAME: &str = "sks-cluster-name";
        /// `round-robin`, `source-hash` or `maglev-hash`.
        pub const SERVICE_STRATEGY: &str = "service-strategy";
        /// `tcp`, `http` or `https`.
        pub const SERVICE_HEALTHCHECK_MODE: &str = "service-healthcheck-mode";
        /// The port health checks probe.
        pub const SERVICE_HEALTHCHECK_PORT: &str = "service-healthcheck-port";
        /// The path HTTP health checks ask for.
        pub const SERVICE_HEALTHCHECK_URI: &str = "service-healthcheck-uri";
        /// A Go duration.
        pub const SERVICE_HEALTHCHECK_INTERVAL: &str = "service-healthcheck-interval";
        /// A Go duration.
        pub const SERVICE_HEALTHCHECK_TIMEOUT: &str = "service-healthcheck-timeout";
        /// Failed checks before a backend is out.
        pub const SERVICE_HEALTHCHECK_RETRIES: &str = "service-healthcheck-retries";

        /// Every key, for typo detection.
        pub const ALL: &[&str] = &[
            ID,
            NAME,
            DESCRIPTION,
            EXTERNAL,
            SERVICE_NAME,
            SERVICE_DESCRIPTION,
            SERVICE_INSTANCEPOOL_ID,
            SERVICE_SKS_NODEPOOL_NAME,
            SKS_CLUSTER_NAME,
            SERVICE_STRATEGY,
            SERVICE_HEALTHCHECK_MODE,
            SERVICE_HEALTHCHECK_PORT,
            SERVICE_HEALTHCHECK_URI,
            SERVICE_HEALTHCHECK_INTERVAL,
            SERVICE_HEALTHCHECK_TIMEOUT,
            SERVICE_HEALTHCHECK_RETRIES,
        ];

        /// The full annotation key of `suffix`.
        pub fn key(suffix: &str) -> String {
            format!("{}{suffix}", super::LB_PREFIX)
        }
    }
}

/// The labels sks-ccm puts on a Node of a nodepool, and the autoscaler on its
/// template node: the nodepool's labels but Kubernetes' own
/// (`kubernetes.io`/`k8s.io` prefixes), the instance type (cleaned into a
/// valid label value, as the Exoscale CCM does), the zone as zone and region,
/// and the nodepool id.
pub fn node_labels<'a>(
    nodepool_labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    nodepool_id: &str,
    instance_type: &str,
    zone: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out: std::collections::BTreeMap<String, String> = nodepool_labels
        .into_iter()
        .filter(|(k, _)| !kubernetes_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let clean: String =
        instance_type.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    out.insert(label::INSTANCE_TYPE.into(), clean.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned());
    out.insert(label::REGION.into(), zone.to_owned());
    out.insert(label::ZONE.into(), zone.to_owned());
    out.insert(label::NODEPOOL_ID.into(), nodepool_id.to_owned());
    out
}

/// Whether `key` is one of Kubernetes' own labels (`kubernetes.io`/`k8s.io`
/// prefixes), which nodepool labels never set on Nodes.
pub fn kubernetes_label(key: &str) -> bool {
    let prefix = key.split_once('/').map_or("", |(p, _)| p);
    prefix == "kubernetes.io" || prefix.ends_with(".kubernetes.io") || prefix == "k8s.io" || prefix.ends_with(".k8s.io")
}

/// Taints on Nodes.
pub mod taint {
    /// A Node registered by a kubelet with an external cloud provider, until sks-ccm initializes it.
    pub const UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";
    /// A Node whose instance is stopped.
    pub const SHUTDOWN: &str = "node.cloudprovider.kubernetes.io/shutdown";
    /// A Node being scaled down (cluster-autoscaler's key, `NoSchedule`).
    pub const TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
    /// The taint kube-scheduler treats a cordoned (`spec.unschedulable`) Node as having.
    pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
}

/// Finalizers.
pub mod finalizer {
    /// Holds a LoadBalancer Service until its NLB is cleaned up (the cloud-provider framework's key).
    pub const LB_CLEANUP: &str = "service.kubernetes.io/load-balancer-cleanup";
}

/// `spec.providerID` of a Node: this prefix and the instance id.
pub const PROVIDER_ID_PREFIX: &str = "exoscale://";

/// The signer of kubelet serving certificates, which sks-ccm approves.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
