//! `deploy/` as a cluster will see it. `kubectl kustomize deploy/` renders;
//! every object parses into its k8s-openapi type without losing a field (a
//! typo'd field would be dropped silently by the API server); the invariants
//! the docs promise hold; and the RBAC is exactly what the binaries use.
//!
//! The RBAC check is derived from a real run, not from a list: sks-ccm and
//! sks-apiserver run against kube-standin as their ServiceAccounts, configured
//! from the rendered Deployments (args, environment, mounted Secrets and
//! ConfigMaps), and do their jobs (Nodes, CSRs, LoadBalancer Services; nodepool
//! get/list/watch/create/patch/delete through the APIService). The stand-in's
//! audit log (`--audit-log`) then lists every request they made: each must be
//! allowed by the rendered roles bound to that ServiceAccount, and each verb of
//! each rendered rule must have been used, except the few in `NOT_EXERCISED`,
//! each with the reason it is needed anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sks_e2e::env::TestEnv;
use sks_e2e::kubeapi::{KubeApi, KubeOptions, policy};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::zone::{TEST_KEY, TEST_SECRET};
use sks_e2e::{TempDir, bin, kill_child, spawn_reporting, wait_for};

/// Rendered rules no run can exercise, each with why it is needed:
/// (ServiceAccount, verb, `group/resource`, reason).
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[
    (
        "kube-system/sks-ccm",
        "approve",
        "certificates.k8s.io/signers",
        "kube-apiserver checks it inside every write to certificatesigningrequests/approval \
         (ccm/src/csr/controller.rs, Csrs::step), not as a request of its own, so no audit log shows it",
    ),
    ("kube-system/sks-apiserver", "get", "/nodes", AUTOSCALER_ACTS),
    ("kube-system/sks-apiserver", "patch", "/nodes", AUTOSCALER_ACTS),
    ("kube-system/sks-apiserver", "create", "/pods/eviction", AUTOSCALER_ACTS),
    ("kube-system/sks-apiserver", "create", "events.k8s.io/events", AUTOSCALER_ACTS),
    ("kube-system/sks-apiserver", "patch", "events.k8s.io/events", AUTOSCALER_ACTS),
];

/// Why the autoscaler's writes are not seen here.
const AUTOSCALER_ACTS: &str = "the autoscaler writes only when it scales or reports (a node to remove, pods \
    waiting); this run has no autoscaled nodepool, and tests/tests/autoscaling.rs exercises these paths";

/// Roles Kubernetes creates itself (bootstrap policy), which deploy/ binds but does not define.
fn builtin_role(kind: &str, namespace: Option<&str>, name: &str) -> Option<Vec<PolicyRule>> {
    let rule = |group: &str, resource: &str, names: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: (!names.is_empty()).then(|| names.iter().map(std::string::ToString::to_string).collect()),
        verbs: verbs.iter().map(std::string::ToString::to_string).collect(),
        ..Default::default()
    };
    match (kind, namespace, name) {
        ("ClusterRole", _, "system:auth-delegator") => Some(vec![
            rule("authentication.k8s.io", "tokenreviews", &[], &["create"]),
            rule("authorization.k8s.io", "subjectaccessreviews", &[], &["create"]),
        ]),
        ("Role", Some("kube-system"), "extension-apiserver-authentication-reader") => {
            Some(vec![rule("", "configmaps", &["extension-apiserver-authentication"], &["get", "list", "watch"])])
        }
        _ => None,
    }
}

/// Paths every authenticated user may GET (system:discovery, system:public-info-viewer).
const DISCOVERY: &[&str] =
    &["/api", "/api/", "/apis", "/apis/", "/openapi/", "/version", "/healthz", "/livez", "/readyz"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

// ---- rendering and typed parsing -------------------------------------------------

/// `kubectl kustomize dir`, one JSON value per object.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().expect("running kubectl kustomize");
    assert!(out.status.success(), "kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn describe(doc: &Value) -> String {
    let ns = doc["metadata"]["namespace"].as_str().map(|n| format!("{n}/")).unwrap_or_default();
    format!("{} {ns}{}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"].as_str().unwrap_or("?"))
}

/// Fields of `a` missing from, or different in, `b`.
fn lost(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost(v, w, &format!("{path}.{k}"), out),
                    None if v.is_null() => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path} ({a} became {b})")),
        _ => {}
    }
}

/// Kustomize folds base64 at 70 columns; the API server's decoder skips the newlines, k8s-openapi's does not.
fn unfold_base64(doc: &mut Value) {
    let unfold = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            *v = Value::String(s.split_whitespace().collect());
        }
    };
    if doc["kind"] == "Secret"
        && let Some(data) = doc.get_mut("data").and_then(Value::as_object_mut)
    {
        data.values_mut().for_each(unfold);
    }
    if doc["kind"] == "APIService"
        && let Some(ca) = doc.pointer_mut("/spec/caBundle")
    {
        unfold(ca);
    }
}

/// `doc` as a `K`, failing on any field `K` does not know.
fn typed<K: DeserializeOwned + serde::Serialize>(doc: &Value) -> K {
    let mut doc = doc.clone();
    unfold_base64(&mut doc);
    let obj: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", describe(&doc)));
    let back = serde_json::to_value(&obj).expect("serializing");
    let mut missing = Vec::new();
    lost(&doc, &back, "", &mut missing);
    assert!(missing.is_empty(), "{}: fields its type does not have (typos?): {missing:?}", describe(&doc));
    obj
}

/// Every rendered object, typed.
#[derive(Default)]
struct Manifests {
    deployments: Vec<Deployment>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    services: Vec<Service>,
    pdbs: Vec<PodDisruptionBudget>,
    namespaces: Vec<Namespace>,
    api_services: Vec<APIService>,
}

impl Manifests {
    fn parse(objects: &[Value]) -> Manifests {
        let mut m = Manifests::default();
        for doc in objects {
            match (doc["apiVersion"].as_str().unwrap_or(""), doc["kind"].as_str().unwrap_or("")) {
                ("apps/v1", "Deployment") => m.deployments.push(typed(doc)),
                ("v1", "ServiceAccount") => m.service_accounts.push(typed(doc)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => m.cluster_roles.push(typed(doc)),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => m.cluster_role_bindings.push(typed(doc)),
                ("rbac.authorization.k8s.io/v1", "Role") => m.roles.push(typed(doc)),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => m.role_bindings.push(typed(doc)),
                ("v1", "Secret") => m.secrets.push(typed(doc)),
                ("v1", "ConfigMap") => m.config_maps.push(typed(doc)),
                ("v1", "Service") => m.services.push(typed(doc)),
                ("policy/v1", "PodDisruptionBudget") => m.pdbs.push(typed(doc)),
                ("v1", "Namespace") => m.namespaces.push(typed(doc)),
                ("apiregistration.k8s.io/v1", "APIService") => m.api_services.push(typed(doc)),
                _ => panic!("{}: a kind this test does not check; add it", describe(doc)),
            }
        }
        m
    }

    fn deployment(&self, name: &str) -> &Deployment {
        self.deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("Deployment {name}"))
    }

    fn secret(&self, ns: &str, name: &str) -> &Secret {
        self.secrets
            .iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("Secret {ns}/{name} is not rendered"))
    }

    fn config_map(&self, ns: &str, name: &str) -> &ConfigMap {
        self.config_maps
            .iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("ConfigMap {ns}/{name} is not rendered"))
    }

    /// Roles bound to ServiceAccount `ns/name`.
    fn grants(&self, ns: &str, name: &str) -> Vec<Grant> {
        let is_sa = |s: &k8s_openapi::api::rbac::v1::Subject, binding_ns: Option<&str>| {
            s.kind == "ServiceAccount" && s.name == name && s.namespace.as_deref().or(binding_ns) == Some(ns)
        };
        let mut out = Vec::new();
        for b in &self.cluster_role_bindings {
            if b.subjects.iter().flatten().any(|s| is_sa(s, None)) {
                out.push(self.grant(&b.role_ref.kind, &b.role_ref.name, None));
            }
        }
        for b in &self.role_bindings {
            let bns = b.metadata.namespace.as_deref();
            if b.subjects.iter().flatten().any(|s| is_sa(s, bns)) {
                out.push(self.grant(&b.role_ref.kind, &b.role_ref.name, bns));
            }
        }
        out
    }

    fn grant(&self, kind: &str, name: &str, namespace: Option<&str>) -> Grant {
        let rendered = match kind {
            "ClusterRole" => {
                self.cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some(name)).map(|r| r.rules.clone())
            }
            _ => self
                .roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name) && r.metadata.namespace.as_deref() == namespace)
                .map(|r| r.rules.clone()),
        };
        let (rules, builtin) = match rendered {
            Some(rules) => (rules.unwrap_or_default(), false),
            None => (
                builtin_role(kind, namespace, name)
                    .unwrap_or_else(|| panic!("{kind} {name} is bound but neither rendered nor built in")),
                true,
            ),
        };
        let label = format!("{kind} {}{name}", namespace.map(|n| format!("{n}/")).unwrap_or_default());
        Grant { label, namespace: namespace.map(str::to_owned), rules, builtin }
    }
}

/// One role bound to a ServiceAccount: its rules, limited to `namespace` for a RoleBinding.
#[derive(Debug, Clone)]
struct Grant {
    label: String,
    namespace: Option<String>,
    rules: Vec<PolicyRule>,
    builtin: bool,
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.iter().flatten().any(|x| x == "*" || x == want)
}

/// A request from the stand-in's audit log.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct Request {
    user: String,
    verb: String,
    api_group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
    path: String,
    allowed: bool,
}

impl Request {
    fn resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.resource.is_empty() {
            return write!(f, "{} {}", self.verb, self.path);
        }
        let group = if self.api_group.is_empty() { String::new() } else { format!(".{}", self.api_group) };
        let name = if self.name.is_empty() { String::new() } else { format!(" {}", self.name) };
        let ns = if self.namespace.is_empty() { String::new() } else { format!(" -n {}", self.namespace) };
        write!(f, "{} {}{group}{name}{ns}", self.verb, self.resource())
    }
}

/// The rule of `grant` allowing `req`, as RBAC matches it.
fn allowing(grant: &Grant, req: &Request) -> Option<usize> {
    if grant.namespace.as_ref().is_some_and(|ns| *ns != req.namespace) {
        return None;
    }
    grant.rules.iter().position(|r| {
        r.verbs.iter().any(|v| v == "*" || *v == req.verb)
            && has(&r.api_groups, &req.api_group)
            && has(&r.resources, &req.resource())
            && r.resource_names.as_ref().is_none_or(|names| !req.name.is_empty() && names.contains(&req.name))
    })
}

// ---- static invariants ----------------------------------------------------------

fn container(d: &Deployment) -> &Container {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container per Deployment");
    &pod.containers[0]
}

/// `--flag=value` of a container's args.
fn arg<'a>(c: &'a Container, flag: &str) -> Option<&'a str> {
    c.args.iter().flatten().find_map(|a| a.strip_prefix(&format!("--{flag}=")))
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

/// The volume mounted at the longest mount path that is a prefix of `path`.
fn mounted_volume<'a>(d: &'a Deployment, path: &str) -> (&'a k8s_openapi::api::core::v1::Volume, String) {
    let c = container(d);
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path == m.mount_path || path.starts_with(&format!("{}/", m.mount_path)))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("{path} is not under any volume mount of {}", c.name));
    assert!(m.sub_path.is_none(), "{}: a subPath mount is never updated, so nothing could rotate", m.mount_path);
    let vol = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes.iter().flatten();
    let vol = vol.clone().find(|v| v.name == m.name).unwrap_or_else(|| panic!("volume {}", m.name));
    (vol, path.trim_start_matches(&m.mount_path).trim_start_matches('/').to_owned())
}

fn secret_keys(s: &Secret) -> BTreeSet<String> {
    s.data
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .chain(s.string_data.iter().flatten().map(|(k, _)| k.clone()))
        .collect()
}

/// The port number of a probe or Service target, resolving names through the container's ports.
fn port_number(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: no port named {name}", c.name))
                .container_port
        }
    }
}

fn crate_version(manifest: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(manifest)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version = \"").and_then(|v| v.strip_suffix('"')))
        .unwrap_or_else(|| panic!("{manifest} has a version"))
        .to_owned()
}

#[test]
fn manifests_render_parse_and_hold_their_invariants() {
    let objects = render(&deploy_dir());
    let m = Manifests::parse(&objects);
    let ccm = m.deployment("sks-ccm");
    let api = m.deployment("sks-apiserver");
    let (cc, ac) = (container(ccm), container(api));

    // Two replicas each, one image holding both binaries, tagged with the crates' version.
    for d in [ccm, api] {
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2), "{:?}", d.metadata.name);
        let sa = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().service_account_name.clone().unwrap();
        assert!(
            m.service_accounts.iter().any(
                |s| s.metadata.name.as_deref() == Some(sa.as_str()) && s.metadata.namespace == d.metadata.namespace
            ),
            "ServiceAccount {sa} is rendered beside {:?}",
            d.metadata.name
        );
        let c = container(d);
        let res = c.resources.as_ref().expect("resources");
        let requests = res.requests.as_ref().expect("requests");
        assert!(requests.contains_key("cpu") && requests.contains_key("memory"), "{}: cpu and memory requests", c.name);
        assert!(res.limits.as_ref().is_some_and(|l| l.contains_key("memory")), "{}: a memory limit", c.name);
        let sc = c.security_context.as_ref().expect("securityContext");
        assert_eq!(
            (sc.allow_privilege_escalation, sc.read_only_root_filesystem),
            (Some(false), Some(true)),
            "{}",
            c.name
        );
        // Orchestrator access: the Exoscale CCM's variables, credentials from a mounted Secret directory.
        assert!(
            env(c, "EXOSCALE_API_KEY").is_none() && env(c, "EXOSCALE_API_SECRET").is_none(),
            "{}: keys never in variables",
            c.name
        );
        let file = env(c, "EXOSCALE_API_CREDENTIALS_FILE")
            .and_then(|e| e.value.clone())
            .expect("EXOSCALE_API_CREDENTIALS_FILE");
        let (vol, rest) = mounted_volume(d, &file);
        assert!(rest.is_empty(), "{file} must be the mount point itself (a Secret directory)");
        let secret = vol.secret.as_ref().and_then(|s| s.secret_name.clone()).expect("a Secret volume");
        let keys = secret_keys(m.secret(d.metadata.namespace.as_deref().unwrap(), &secret));
        assert_eq!(
            keys,
            BTreeSet::from(["api-key".to_owned(), "api-secret".to_owned()]),
            "Secret {secret}: the Exoscale CCM's key names"
        );
        for e in c.env.iter().flatten() {
            if let Some(r) = e.value_from.as_ref().and_then(|v| v.config_map_key_ref.as_ref()) {
                let cm = m.config_map(d.metadata.namespace.as_deref().unwrap(), &r.name);
                assert!(
                    cm.data.as_ref().is_some_and(|d| d.contains_key(&r.key)),
                    "{}: ConfigMap {} has key {}",
                    e.name,
                    r.name,
                    r.key
                );
            }
        }
        for key in ["SKS_CLUSTER_ID", "EXOSCALE_API_ZONE"] {
            assert!(env(c, key).is_some(), "{}: {key}", c.name);
        }
    }
    let image = cc.image.clone().unwrap();
    assert_eq!(ac.image.as_deref(), Some(image.as_str()), "both Deployments run the same image");
    assert_eq!(
        image.rsplit(':').next(),
        Some(crate_version("ccm/Cargo.toml").as_str()),
        "image tag = the crates' version"
    );
    assert_eq!(crate_version("ccm/Cargo.toml"), crate_version("apiserver-ext/Cargo.toml"));
    assert_eq!(cc.command.as_deref(), Some(&["/usr/local/bin/sks-ccm".to_owned()][..]));
    assert_eq!(ac.command.as_deref(), Some(&["/usr/local/bin/sks-apiserver".to_owned()][..]));

    // sks-ccm: leader election on the Lease its Role names, probes on the bind address, bootstrap tolerations.
    assert_eq!(arg(cc, "leader-elect"), Some("true"));
    let (lease_ns, lease) =
        (arg(cc, "leader-elect-resource-namespace").unwrap(), arg(cc, "leader-elect-resource-name").unwrap());
    let ccm_lease = Request {
        verb: "update".into(),
        api_group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        namespace: lease_ns.into(),
        name: lease.into(),
        ..req_template()
    };
    let ccm_grants = m.grants(ccm.metadata.namespace.as_deref().unwrap(), "sks-ccm");
    assert!(ccm_grants.iter().any(|g| allowing(g, &ccm_lease).is_some()), "sks-ccm may renew {lease_ns}/{lease}");
    let bind: std::net::SocketAddr = arg(cc, "bind-address").unwrap().parse().unwrap();
    let live = cc.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("liveness httpGet");
    let ready = cc.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("readiness httpGet");
    assert_eq!((live.path.as_deref(), ready.path.as_deref()), (Some("/healthz"), Some("/readyz")));
    for probe in [live, ready] {
        assert_eq!(port_number(cc, &probe.port), i32::from(bind.port()), "probes reach --bind-address");
        assert!(probe.scheme.as_deref().is_none_or(|s| s == "HTTP"));
    }
    assert!(bind.ip().is_unspecified(), "the kubelet probes from outside the pod: bind every address");
    let pod = ccm.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(
        pod.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some("node.cloudprovider.kubernetes.io/uninitialized")),
        "sks-ccm must run on the uninitialized Nodes it initializes"
    );
    let ccm_rules: Vec<PolicyRule> = m.grants("kube-system", "sks-ccm").into_iter().flat_map(|g| g.rules).collect();
    assert!(
        ccm_rules.iter().any(|r| r.verbs == ["approve"]
            && has(&r.resources, "signers")
            && r.resource_names.as_deref() == Some(&["kubernetes.io/kubelet-serving".to_owned()][..])),
        "approve on signer kubernetes.io/kubelet-serving, and on no other signer"
    );

    // sks-apiserver: serving certificate, kubeconfig and metadata namespace wired to what is rendered.
    let ns = api.metadata.namespace.as_deref().unwrap();
    let (serving, cert_key) = mounted_volume(api, arg(ac, "tls-cert-file").unwrap());
    let (serving_key, key_key) = mounted_volume(api, arg(ac, "tls-private-key-file").unwrap());
    assert_eq!(serving.name, serving_key.name);
    let serving_secret = m.secret(ns, serving.secret.as_ref().unwrap().secret_name.as_deref().unwrap());
    assert_eq!(serving_secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let serving_keys = secret_keys(serving_secret);
    assert!(
        serving_keys.contains(&cert_key) && serving_keys.contains(&key_key) && serving_keys.contains("ca.crt"),
        "{serving_keys:?}"
    );
    let (kubeconfig, kubeconfig_key) = mounted_volume(api, arg(ac, "kubeconfig").unwrap());
    let cm = m.config_map(ns, &kubeconfig.config_map.as_ref().unwrap().name);
    assert!(cm.data.as_ref().unwrap().contains_key(&kubeconfig_key));
    let metadata_ns = arg(ac, "metadata-namespace").expect("--metadata-namespace");
    assert!(
        m.namespaces.iter().any(|n| n.metadata.name.as_deref() == Some(metadata_ns)),
        "namespace {metadata_ns} is rendered"
    );
    let listen: std::net::SocketAddr = arg(ac, "listen").unwrap().parse().unwrap();
    for (probe, paths) in [(&ac.liveness_probe, &["/livez", "/healthz"][..]), (&ac.readiness_probe, &["/readyz"][..])] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("httpGet probe");
        assert!(paths.contains(&get.path.as_deref().unwrap()), "{:?}", get.path);
        assert_eq!((get.scheme.as_deref(), port_number(ac, &get.port)), (Some("HTTPS"), i32::from(listen.port())));
    }

    // The APIService reaches sks-apiserver through the rendered Service and trusts exactly its CA.
    let [apiservice] = &m.api_services[..] else { panic!("one APIService") };
    assert_eq!(apiservice.metadata.name.as_deref(), Some("v1alpha1.sks.exoscale.net"));
    let spec = apiservice.spec.as_ref().unwrap();
    assert_eq!((spec.group.as_deref(), spec.version.as_deref()), (Some("sks.exoscale.net"), Some("v1alpha1")));
    assert_eq!((spec.group_priority_minimum, spec.version_priority), (2000, 100));
    assert_ne!(spec.insecure_skip_tls_verify, Some(true));
    let ca = &serving_secret.data.as_ref().unwrap()["ca.crt"];
    assert_eq!(spec.ca_bundle.as_ref().map(|b| &b.0), Some(&ca.0), "caBundle is the serving Secret's ca.crt");
    let svc_ref = spec.service.as_ref().unwrap();
    let svc = m
        .services
        .iter()
        .find(|s| s.metadata.name == svc_ref.name && s.metadata.namespace == svc_ref.namespace)
        .expect("the APIService's Service is rendered");
    let svc_spec = svc.spec.as_ref().unwrap();
    let svc_port =
        svc_spec.ports.iter().flatten().find(|p| Some(p.port) == svc_ref.port).expect("the APIService's port");
    assert_eq!(port_number(ac, svc_port.target_port.as_ref().unwrap()), i32::from(listen.port()));
    let pod_labels = api.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selects = |sel: &BTreeMap<String, String>| sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v));
    assert!(selects(svc_spec.selector.as_ref().unwrap()), "the Service selects sks-apiserver's pods");
    let pdb =
        m.pdbs.iter().find(|p| p.metadata.name.as_deref() == Some("sks-apiserver")).expect("a PDB for sks-apiserver");
    let pdb_spec = pdb.spec.as_ref().unwrap();
    assert!(selects(pdb_spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap()));
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));

    // Delegated authn/authz and Node reads for sks-apiserver's ServiceAccount.
    let grants = m.grants(ns, "sks-apiserver");
    let labels: BTreeSet<&str> = grants.iter().map(|g| g.label.as_str()).collect();
    assert!(labels.contains("ClusterRole system:auth-delegator"), "{labels:?}");
    assert!(labels.contains("Role kube-system/extension-apiserver-authentication-reader"), "{labels:?}");
    let node_read = Request { verb: "watch".into(), resource: "nodes".into(), ..req_template() };
    assert!(grants.iter().any(|g| allowing(g, &node_read).is_some()), "sks-apiserver may watch Nodes");
    // The upgrades Lease, in the metadata namespace unless a flag moves it.
    let upgrades_lease = Request {
        verb: "update".into(),
        api_group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        namespace: arg(ac, "leader-elect-resource-namespace").unwrap_or(metadata_ns).into(),
        name: arg(ac, "leader-elect-resource-name").unwrap_or("sks-apiserver-upgrades").into(),
        ..req_template()
    };
    assert!(grants.iter().any(|g| allowing(g, &upgrades_lease).is_some()), "sks-apiserver may renew its Lease");

    // The examples: the Service parses as one and names every annotation sks-ccm knows.
    let example = std::fs::read_to_string(deploy_dir().join("examples/loadbalancer-service.yaml")).unwrap();
    let svc: Service = typed(&serde_yaml::from_str::<Value>(&example).unwrap());
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    if let Err(e) = sks_ccm::lb::annotations::parse(&annotations) {
        panic!("the example's annotations do not parse: {e:?}");
    }
    let docs = std::fs::read_to_string(deploy_dir().join("../docs/annotations.md")).unwrap();
    for key in sks_keys::annotation::lb::ALL {
        let full = sks_keys::annotation::lb::key(key);
        assert!(example.contains(&format!("{full}:")), "the example Service explains {full}");
        assert!(
            docs.contains(&format!("`{full}`")) || docs.contains(&format!("`{key}`")),
            "docs/annotations.md documents {full}"
        );
    }
    let nodepool: Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy_dir().join("examples/nodepool.yaml")).unwrap()).unwrap();
    assert_eq!(
        (nodepool["apiVersion"].as_str(), nodepool["kind"].as_str()),
        (Some("sks.exoscale.net/v1alpha1"), Some("NodePool"))
    );
}

fn req_template() -> Request {
    Request {
        user: String::new(),
        verb: String::new(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: String::new(),
        allowed: true,
    }
}

// ---- the run: both binaries as their ServiceAccounts, configured from the render ---

/// A kubeconfig of `kube` authenticating with the token in `token_file`, as in a pod.
fn token_kubeconfig(kube: &KubeApi, name: &str, token_file: &Path) -> PathBuf {
    let path = kube.dir().join(format!("{name}.kubeconfig"));
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": kube.url, "certificate-authority": kube.cert_dir.join("ca.crt")}}],
        "users": [{"name": "u", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A pod's ServiceAccount directory: the cluster CA of `kube` and a token.
fn service_account_dir(kube: &KubeApi, name: &str, token: &str) -> PathBuf {
    let dir = kube.dir().join(format!("{name}-serviceaccount"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(kube.cert_dir.join("ca.crt"), dir.join("ca.crt")).unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    dir
}

/// The requests `kube`'s audit log lists.
fn audit(kube: &KubeApi) -> Vec<Request> {
    let text = std::fs::read_to_string(kube.audit_log().expect("an audit log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}"))).collect()
}

/// A process started from a rendered Deployment; killed on drop.
struct Pod(Option<Child>);

impl Drop for Pod {
    fn drop(&mut self) {
        kill_child(&mut self.0);
    }
}

fn rewrite(s: &str, paths: &[(String, String)]) -> String {
    paths.iter().fold(s.to_owned(), |s, (from, to)| s.replace(from, to))
}

/// Runs a rendered Deployment's container as a local process, as the kubelet
/// would: its command and args, its environment (ConfigMap keys and the pod
/// name resolved from the render, then `overrides`), its Secret and ConfigMap
/// volumes written under `root` (credentials replaced by the test zone's key),
/// every in-pod path and the in-cluster API address rewritten by `paths`.
/// Listen addresses become `127.0.0.1:0`; returns the process and its first line.
fn launch(
    m: &Manifests,
    d: &Deployment,
    root: &Path,
    mut paths: Vec<(String, String)>,
    overrides: &[(&str, String)],
    extra_args: &[String],
) -> (Pod, String) {
    let c = container(d);
    let ns = d.metadata.namespace.as_deref().unwrap();
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    for mount in c.volume_mounts.iter().flatten() {
        paths.push((mount.mount_path.clone(), root.join(&mount.name).display().to_string()));
    }
    for mount in c.volume_mounts.iter().flatten() {
        let dir = root.join(&mount.name);
        std::fs::create_dir_all(&dir).unwrap();
        let vol = pod.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
        let files: BTreeMap<String, Vec<u8>> = if let Some(s) = &vol.secret {
            let secret = m.secret(ns, s.secret_name.as_deref().unwrap());
            let keys = secret_keys(secret);
            if keys == BTreeSet::from(["api-key".to_owned(), "api-secret".to_owned()]) {
                BTreeMap::from([("api-key".into(), TEST_KEY.into()), ("api-secret".into(), TEST_SECRET.into())])
            } else {
                let data = secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone()));
                data.chain(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())))
                    .collect()
            }
        } else if let Some(c) = &vol.config_map {
            let cm = m.config_map(ns, &c.name);
            cm.data.iter().flatten().map(|(k, v)| (k.clone(), rewrite(v, &paths).into_bytes())).collect()
        } else {
            panic!("volume {}: only Secrets and ConfigMaps are mounted", vol.name)
        };
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }
    let program = c.command.as_ref().and_then(|cmd| cmd.first()).expect("command");
    let mut cmd = Command::new(bin(program.rsplit('/').next().unwrap()));
    cmd.env_clear().stderr(Stdio::inherit());
    for e in c.env.iter().flatten() {
        let value = match (&e.value, e.value_from.as_ref()) {
            (Some(v), _) => rewrite(v, &paths),
            (None, Some(from)) if from.config_map_key_ref.is_some() => {
                let r = from.config_map_key_ref.as_ref().unwrap();
                m.config_map(ns, &r.name).data.as_ref().unwrap()[&r.key].clone()
            }
            (None, Some(from)) if from.field_ref.as_ref().is_some_and(|f| f.field_path == "metadata.name") => {
                format!("{}-0", d.metadata.name.as_deref().unwrap())
            }
            _ => panic!("{}: a variable source this harness does not resolve", e.name),
        };
        cmd.env(&e.name, value);
    }
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    for a in c.args.iter().flatten() {
        match a.split_once('=') {
            Some((flag @ ("--bind-address" | "--listen"), _)) => cmd.arg(format!("{flag}=127.0.0.1:0")),
            _ => cmd.arg(rewrite(a, &paths)),
        };
    }
    cmd.args(extra_args);
    let (child, line) = spawn_reporting(&mut cmd, d.metadata.name.as_deref().unwrap());
    (Pod(Some(child)), line)
}

fn apply(k: &Kubectl, obj: &impl serde::Serialize) {
    let out = k.with_stdin(&["apply", "-f", "-"], &serde_json::to_string(obj).unwrap());
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = k.run(&a);
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_is_exactly_what_the_binaries_use() {
    let tmp = TempDir::new("deploy");
    let dir = tmp.path();
    // deploy/ as an operator installs it: with a serving PKI from gen-pki.sh.
    let deploy = dir.join("deploy");
    copy_tree(&deploy_dir(), &deploy);
    let out = Command::new("sh").arg(deploy.join("gen-pki.sh")).output().expect("running gen-pki.sh");
    assert!(out.status.success(), "gen-pki.sh: {}", String::from_utf8_lossy(&out.stderr));
    let m = Manifests::parse(&render(&deploy));

    let accounts = [("kube-system", "sks-ccm"), ("kube-system", "sks-apiserver")];
    let user = |(ns, name): (&str, &str)| format!("system:serviceaccount:{ns}:{name}");

    // The stand-in enforces the rendered roles (without resourceNames, which its
    // policy lacks; the audit check below applies them), kubelets' rights, and
    // alice's, a user of nodepools.
    let mut rules = Vec::new();
    let mut tokens = String::from("alice-token,alice,alice-uid,\"sks-users\"\n");
    rules.push(json!({"users": ["alice"], "verbs": ["*"], "apiGroups": ["sks.exoscale.net"], "resources": ["*"]}));
    for sa in accounts {
        let (ns, name) = sa;
        tokens +=
            &format!("{name}-token,{},{name}-uid,\"system:serviceaccounts,system:serviceaccounts:{ns}\"\n", user(sa));
        for g in m.grants(ns, name) {
            for r in &g.rules {
                rules.push(json!({"users": [user(sa)], "verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources, "namespaces": g.namespace.iter().collect::<Vec<_>>()}));
            }
        }
    }
    // The stand-in, keeping its audit log; simulated kubelets register the seeded
    // cluster's Nodes in it and ask for serving certificates.
    let kube = KubeOptions { policy: Some(policy(rules)), tokens: Some(tokens), audit_log: true, ..Default::default() };
    let env = TestEnv::builder().kube(kube).kubelets().start().await;
    let (cloud, kube) = (&env.client, env.kube());
    let admin = kube.kubectl();
    let overrides = [("SKS_CLUSTER_ID", env.cluster.to_string()), ("EXOSCALE_API_ENDPOINT", env.zone.endpoint())];

    // sks-ccm, in-cluster credentials written out as a kubeconfig (the one test-only
    // flag besides it: Nodes re-checked every 2 s, so a deleted instance shows quickly).
    let ccm_sa = service_account_dir(kube, "sks-ccm", "sks-ccm-token");
    let ccm_kubeconfig = token_kubeconfig(kube, "sks-ccm", &ccm_sa.join("token"));
    let ccm_extra = [format!("--kubeconfig={}", ccm_kubeconfig.display()), "--node-sync-period-seconds=2".to_owned()];
    let (ccm, _) = launch(&m, m.deployment("sks-ccm"), &dir.join("sks-ccm"), Vec::new(), &overrides, &ccm_extra);

    let initialized = |want: usize| {
        let admin = admin.clone();
        async move {
            let nodes = get(&admin, &["get", "nodes"]);
            let done = nodes["items"].as_array()?.iter().filter(|n| n["spec"]["providerID"].is_string()).count();
            (done >= want).then_some(nodes)
        }
    };
    let nodes = wait_for("3 initialized Nodes", Duration::from_secs(60), || initialized(3)).await;
    wait_for("an approved kubelet serving CSR", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            let csrs = get(&admin, &["get", "csr"]);
            csrs["items"]
                .as_array()?
                .iter()
                .any(|c| c["status"]["conditions"][0]["reason"] == "SKSCCMApproved")
                .then_some(())
        }
    })
    .await;

    // The example Service gets its NLB; one naming another cluster fails the same way
    // on every retry, which patches its Event's series instead of creating another.
    let example: Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy.join("examples/loadbalancer-service.yaml")).unwrap())
            .unwrap();
    let mut foreign = example.clone();
    foreign["metadata"]["name"] = json!("other-cluster");
    foreign["metadata"]["annotations"]["service.beta.kubernetes.io/exoscale-loadbalancer-sks-cluster-name"] =
        json!("not-this-one");
    apply(&admin, &foreign);
    apply(&admin, &example);
    wait_for("the example Service's ingress IP", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move {
            get(&admin, &["get", "svc", "web", "-n", "default"])["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_owned)
        }
    })
    .await;

    // A Node whose instance is deleted is deleted.
    let node = nodes["items"].as_array().unwrap().iter().find(|n| n["spec"]["providerID"].is_string()).unwrap().clone();
    let instance: uuid::Uuid =
        node["spec"]["providerID"].as_str().unwrap().trim_start_matches("exoscale://").parse().unwrap();
    cloud.delete_instance(instance).await.unwrap();
    let node_name = node["metadata"]["name"].as_str().unwrap().to_owned();
    wait_for("the Node of the deleted instance to go", Duration::from_secs(60), || {
        let (admin, name) = (admin.clone(), node_name.clone());
        async move { get(&admin, &["get", "node", &name]).is_null().then_some(()) }
    })
    .await;

    // sks-apiserver behind the rendered Service and APIService (Endpoints stand in for its pods).
    let api_sa = service_account_dir(kube, "sks-apiserver", "sks-apiserver-token");
    let paths = vec![
        ("/var/run/secrets/kubernetes.io/serviceaccount".to_owned(), api_sa.display().to_string()),
        ("https://kubernetes.default.svc".to_owned(), kube.url.clone()),
    ];
    for ns in &m.namespaces {
        apply(&admin, ns);
    }
    let (api, line) = launch(&m, m.deployment("sks-apiserver"), &dir.join("sks-apiserver"), paths, &overrides, &[]);
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let svc = m.services.iter().find(|s| s.metadata.name.as_deref() == Some("sks-apiserver")).unwrap();
    apply(&admin, svc);
    apply(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "sks-apiserver", "namespace": "kube-system"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
    );
    apply(&admin, &m.api_services[0]);
    wait_for("the APIService to be available", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move {
            let a = get(&admin, &["get", "apiservice", "v1alpha1.sks.exoscale.net"]);
            a["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
                .then_some(())
        }
    })
    .await;

    // alice works with nodepools through the cluster's API: every request is a
    // SubjectAccessReview, annotations go to the metadata ConfigMaps.
    let alice_token = dir.join("alice-token");
    std::fs::write(&alice_token, "alice-token").unwrap();
    let alice = Kubectl::new(token_kubeconfig(kube, "alice", &alice_token), dir.join("cache-alice"));
    assert!(alice.ok(&["get", "np"]).contains("workers"));
    alice.ok(&["apply", "-f", deploy.join("examples/nodepool.yaml").to_str().unwrap()]);
    alice.ok(&["annotate", "np", "batch", "example.com/owner=data"]);
    alice.ok(&["annotate", "np", "batch", "example.com/note=second-write"]);
    let np = get(&alice, &["get", "np", "batch"]);
    assert_eq!(np["metadata"]["annotations"]["example.com/note"], "second-write", "{np}");
    let metadata_ns = arg(container(m.deployment("sks-apiserver")), "metadata-namespace").unwrap().to_owned();
    let stored = format!("sks-nodepool-{}", np["metadata"]["uid"].as_str().unwrap());
    let annotations = get(&admin, &["get", "cm", "-n", &metadata_ns, &stored]);
    assert!(annotations["data"]["metadata"].as_str().is_some_and(|d| d.contains("second-write")), "{annotations}");
    alice.ok(&["delete", "np", "batch", "--timeout=60s"]);
    wait_for("the deleted nodepool's metadata ConfigMap to go", Duration::from_secs(30), || {
        let (admin, ns, name) = (admin.clone(), metadata_ns.clone(), stored.clone());
        async move { get(&admin, &["get", "cm", "-n", &ns, &name]).is_null().then_some(()) }
    })
    .await;
    // A client with a bearer token straight to sks-apiserver: a TokenReview.
    orchestrator::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(deploy.join("sks-apiserver/pki/ca.crt")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("sks-apiserver.kube-system.svc", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://sks-apiserver.kube-system.svc:{port}/apis/sks.exoscale.net/v1alpha1/nodepools"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());

    // Repeated failures of the foreign-cluster Service patch its Event (every 30 s).
    wait_for("a repeated Event to be patched", Duration::from_secs(90), || {
        let admin = admin.clone();
        async move {
            let events = get(&admin, &["get", "events.events.k8s.io", "-n", "default"]);
            events["items"]
                .as_array()?
                .iter()
                .any(|e| e["regarding"]["name"] == "other-cluster" && e["series"]["count"].as_i64() >= Some(2))
                .then_some(())
        }
    })
    .await;
    // Deleting the example Service removes the finalizer after the NLB.
    admin.ok(&["delete", "svc", "web", "-n", "default", "--timeout=60s"]);
    drop((ccm, api));

    check_audit(&m, &audit(kube), &accounts.map(|sa| (sa, user(sa))));
}

/// `resource.group`, or `resource` for the core group.
fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") }
}

/// Every audited request of each ServiceAccount is allowed by its rendered roles,
/// and every verb of every rendered rule was used (or is in `NOT_EXERCISED`).
fn check_audit(m: &Manifests, audit: &[Request], accounts: &[((&str, &str), String)]) {
    let mut problems = Vec::new();
    for ((ns, name), user) in accounts {
        let account = format!("{ns}/{name}");
        let grants = m.grants(ns, name);
        let requests: BTreeSet<&Request> = audit.iter().filter(|r| r.user == *user).collect();
        assert!(!requests.is_empty(), "{account} made no request: is --audit-log working?");
        let shown: Vec<String> =
            requests.iter().map(std::string::ToString::to_string).collect::<BTreeSet<_>>().into_iter().collect();
        eprintln!("{account} made {} distinct requests:\n  {}", requests.len(), shown.join("\n  "));
        // (grant, rule, verb, group, resource) used by some request.
        let mut used: BTreeSet<(usize, usize, String, String, String)> = BTreeSet::new();
        for req in &requests {
            if !req.allowed {
                problems.push(format!("{account}: refused by the stand-in: {req}"));
            }
            if req.resource.is_empty() {
                let public = req.verb == "get"
                    && DISCOVERY.iter().any(|p| req.path == *p || (p.ends_with('/') && req.path.starts_with(p)));
                if !public {
                    problems.push(format!("{account}: non-resource request no role allows: {req}"));
                }
                continue;
            }
            let mut allowed = false;
            for (gi, g) in grants.iter().enumerate() {
                if let Some(ri) = allowing(g, req) {
                    allowed = true;
                    used.insert((gi, ri, req.verb.clone(), req.api_group.clone(), req.resource()));
                }
            }
            if !allowed {
                problems.push(format!("{account}: no rendered rule allows {req}"));
            }
        }
        for (gi, g) in grants.iter().enumerate() {
            if g.builtin {
                if !used.iter().any(|u| u.0 == gi) {
                    problems.push(format!("{account}: {} is bound but never used", g.label));
                }
                continue;
            }
            for (ri, r) in g.rules.iter().enumerate() {
                let lists = [&Some(r.verbs.clone()), &r.api_groups, &r.resources];
                if lists.iter().any(|l| l.iter().flatten().any(|x| x == "*")) {
                    problems.push(format!("{account}: {} rule {ri} uses a wildcard", g.label));
                }
                for verb in &r.verbs {
                    for group in r.api_groups.iter().flatten() {
                        for res in r.resources.iter().flatten() {
                            let hit =
                                used.iter().any(|u| (u.0, u.1) == (gi, ri) && (&u.2, &u.3, &u.4) == (verb, group, res));
                            let excused = NOT_EXERCISED
                                .iter()
                                .any(|e| e.0 == account && e.1 == verb && e.2 == format!("{group}/{res}"));
                            match (hit, excused) {
                                (false, false) => problems.push(format!(
                                    "{account}: {} allows {verb} {}, which it never did",
                                    g.label,
                                    qualified(res, group)
                                )),
                                (true, true) => problems.push(format!(
                                    "{account}: {verb} {group}/{res} is exercised now: drop it from NOT_EXERCISED"
                                )),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
    for (account, verb, resource, _) in NOT_EXERCISED {
        let (ns, name) = account.split_once('/').unwrap();
        let (group, res) = resource.split_once('/').unwrap();
        let rendered = m
            .grants(ns, name)
            .iter()
            .flat_map(|g| g.rules.clone())
            .any(|r| r.verbs.iter().any(|v| v == verb) && has(&r.api_groups, group) && has(&r.resources, res));
        if !rendered {
            problems
                .push(format!("NOT_EXERCISED names {verb} {resource} for {account}, which no rendered rule grants"));
        }
    }
    assert!(problems.is_empty(), "RBAC and behaviour disagree:\n{}", problems.join("\n"));
}
