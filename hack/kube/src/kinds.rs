//! The kinds the stand-in serves, as the generic machinery sees them.

use serde_json::{Value, json};
use sks_rest::resource::{Column, ResourceDef, Subresource};

use crate::printers;
use crate::strategies::KindOptions;

fn open_schema(description: &str) -> Value {
    // The stand-in does not model fields: anything is kept, as a CRD with preserved fields.
    json!({"description": description, "x-kubernetes-preserve-unknown-fields": true, "type": "object"})
}

fn cell(o: &Value, pointer: &str) -> Value {
    match o.pointer(pointer) {
        Some(Value::String(s)) => json!(s),
        Some(Value::Null) | None => json!("<none>"),
        Some(other) => json!(other.to_string()),
    }
}

fn node_status(o: &Value) -> Value {
    let ready = o["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).map_or(
        "Unknown",
        |c| match c["status"].as_str() {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        },
    );
    let unschedulable = o["spec"]["unschedulable"] == json!(true);
    json!(if unschedulable { format!("{ready},SchedulingDisabled") } else { ready.to_owned() })
}

fn node_ip(o: &Value, kind: &str) -> Value {
    let ip = o["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == kind))
        .and_then(|x| x["address"].as_str());
    json!(ip.unwrap_or("<none>"))
}

fn service_external(o: &Value) -> Value {
    let ingress: Vec<&str> = o["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str())).collect())
        .unwrap_or_default();
    if !ingress.is_empty() {
        return json!(ingress.join(","));
    }
    json!(if o["spec"]["type"] == "LoadBalancer" { "<pending>" } else { "<none>" })
}

fn service_ports(o: &Value) -> Value {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!(if ports.is_empty() { "<none>".to_owned() } else { ports.join(",") })
}

fn csr_condition(o: &Value) -> Value {
    let conds: Vec<&str> = o["status"]["conditions"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["status"] != "False").filter_map(|c| c["type"].as_str()).collect())
        .unwrap_or_default();
    let mut out = if conds.is_empty() { "Pending".to_owned() } else { conds.join(",") };
    if o["status"]["certificate"].is_string() {
        out.push_str(",Issued");
    }
    json!(out)
}

fn apiservice_available(o: &Value) -> Value {
    let c = o["status"]["conditions"].as_array().and_then(|a| a.iter().find(|c| c["type"] == "Available")).cloned();
    match c {
        Some(c) if c["status"] == "True" => json!("True"),
        Some(c) => json!(format!("False ({})", c["reason"].as_str().unwrap_or(""))),
        None => json!("Unknown"),
    }
}

fn col(name: &'static str, priority: i32, cell: fn(&Value) -> Value) -> Column {
    Column { name, type_: "string", format: "", priority, description: name, cell }
}

fn def(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        plural,
        singular,
        kind,
        short_names,
        categories: &[],
        namespaced,
        verbs: Vec::new(),
        subresources: Vec::new(),
        columns: Vec::new(),
        schema: open_schema(kind),
        extra_field_selectors: &[],
        strategic_merge: Some(MERGE_KEYS),
    }
}

/// List merge keys of the served kinds' strategic merge patches (their Go types' `patchMergeKey`s).
const MERGE_KEYS: sks_rest::patch::MergeKeys = &[
    ("spec.ports", "port"),
    ("spec.containers", "name"),
    ("spec.containers.ports", "containerPort"),
    ("spec.containers.env", "name"),
    ("spec.containers.volumeMounts", "mountPath"),
    ("spec.initContainers", "name"),
    ("spec.volumes", "name"),
    ("spec.template.spec.containers", "name"),
    ("spec.template.spec.containers.ports", "containerPort"),
    ("spec.template.spec.containers.env", "name"),
    ("spec.template.spec.containers.volumeMounts", "mountPath"),
    ("spec.template.spec.initContainers", "name"),
    ("spec.template.spec.volumes", "name"),
    ("status.conditions", "type"),
    ("status.addresses", "type"),
    ("status.loadBalancer.ingress", "ip"),
    ("metadata.ownerReferences", "uid"),
    ("subsets", "ip"),
];

fn status_sub(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource { name: "status", group, version, kind, verbs: &["get", "patch", "update"] }
}

/// Every stored kind with its options.
pub fn stored() -> Vec<(ResourceDef, KindOptions)> {
    let status = KindOptions { status_subresource: true, keep_status_on_create: false };
    let plain = KindOptions::default();
    let mut out = Vec::new();

    let mut ns = def("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"]);
    ns.subresources.push(status_sub("", "v1", "Namespace"));
    ns.columns.push(col("Status", 0, |o| json!(o["status"]["phase"].as_str().unwrap_or("Active"))));
    out.push((ns, status));

    let mut nodes = def("", "v1", "nodes", "node", "Node", false, &["no"]);
    nodes.subresources.push(status_sub("", "v1", "Node"));
    nodes.columns = vec![
        col("Status", 0, node_status),
        col("Version", 0, |o| cell(o, "/status/nodeInfo/kubeletVersion")),
        col("Internal-IP", 1, |o| node_ip(o, "InternalIP")),
        col("External-IP", 1, |o| node_ip(o, "ExternalIP")),
    ];
    nodes.extra_field_selectors = &["spec.unschedulable", "spec.providerID"];
    out.push((nodes, KindOptions { status_subresource: true, keep_status_on_create: true }));

    let mut svc = def("", "v1", "services", "service", "Service", true, &["svc"]);
    svc.subresources.push(status_sub("", "v1", "Service"));
    svc.columns = vec![
        col("Type", 0, |o| cell(o, "/spec/type")),
        col("Cluster-IP", 0, |o| cell(o, "/spec/clusterIP")),
        col("External-IP", 0, service_external),
        col("Port(s)", 0, service_ports),
    ];
    out.push((svc, status));

    let mut pods = def("", "v1", "pods", "pod", "Pod", true, &["po"]);
    pods.categories = &["all"];
    pods.subresources = vec![
        status_sub("", "v1", "Pod"),
        Subresource { name: "binding", group: "", version: "v1", kind: "Binding", verbs: &["create"] },
        Subresource { name: "eviction", group: "policy", version: "v1", kind: "Eviction", verbs: &["create"] },
    ];
    pods.columns = printers::pods();
    // kube-apiserver's pod field selectors (pkg/registry/core/pod.PodToSelectableFields), the ones with string values.
    pods.extra_field_selectors = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    out.push((pods, status));

    out.push((def("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"]), plain));
    let mut events = def("", "v1", "events", "event", "Event", true, &["ev"]);
    events.columns = vec![
        col("Type", 0, |o| cell(o, "/type")),
        col("Reason", 0, |o| cell(o, "/reason")),
        col("Object", 0, |o| {
            json!(format!(
                "{}/{}",
                o["involvedObject"]["kind"].as_str().unwrap_or("").to_lowercase(),
                o["involvedObject"]["name"].as_str().unwrap_or("")
            ))
        }),
        col("Message", 0, |o| cell(o, "/message")),
    ];
    // kube-apiserver's Event fields (`source` aside), `kubectl describe` filters on the involvedObject's.
    events.extra_field_selectors = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "type",
    ];
    out.push((events, plain));
    let mut cm = def("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"]);
    cm.columns.push(col("Data", 0, |o| json!(o["data"].as_object().map_or(0, serde_json::Map::len).to_string())));
    out.push((cm, plain));
    let mut secrets = def("", "v1", "secrets", "secret", "Secret", true, &[]);
    secrets.columns.push(col("Type", 0, |o| cell(o, "/type")));
    out.push((secrets, plain));
    out.push((def("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"]), plain));

    let mut ev2 = def("events.k8s.io", "v1", "events", "event", "Event", true, &["ev"]);
    ev2.columns = vec![
        col("Type", 0, |o| cell(o, "/type")),
        col("Reason", 0, |o| cell(o, "/reason")),
        col("Object", 0, |o| {
            json!(format!(
                "{}/{}",
                o["regarding"]["kind"].as_str().unwrap_or("").to_lowercase(),
                o["regarding"]["name"].as_str().unwrap_or("")
            ))
        }),
        col("Note", 0, |o| cell(o, "/note")),
    ];
    ev2.extra_field_selectors = &["regarding.name", "regarding.kind", "reason", "type"];
    out.push((ev2, plain));

    let mut csr = def(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        &["csr"],
    );
    csr.subresources.push(status_sub("certificates.k8s.io", "v1", "CertificateSigningRequest"));
    csr.subresources.push(Subresource {
        name: "approval",
        group: "certificates.k8s.io",
        version: "v1",
        kind: "CertificateSigningRequest",
        verbs: &["get", "patch", "update"],
    });
    csr.columns = vec![
        col("SignerName", 0, |o| cell(o, "/spec/signerName")),
        col("Requestor", 0, |o| cell(o, "/spec/username")),
        col("Condition", 0, csr_condition),
    ];
    csr.extra_field_selectors = &["spec.signerName"];
    out.push((csr, status));

    let scale = |kind: &'static str| -> Vec<Subresource> {
        vec![
            status_sub("apps", "v1", kind),
            Subresource {
                name: "scale",
                group: "autoscaling",
                version: "v1",
                kind: "Scale",
                verbs: &["get", "patch", "update"],
            },
        ]
    };
    let mut deployments = def("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"]);
    deployments.categories = &["all"];
    deployments.subresources = scale("Deployment");
    deployments.columns = printers::deployments();
    out.push((deployments, status));
    let mut replicasets = def("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"]);
    replicasets.categories = &["all"];
    replicasets.subresources = scale("ReplicaSet");
    replicasets.columns = printers::replicasets();
    out.push((replicasets, status));
    let mut daemonsets = def("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, &["ds"]);
    daemonsets.categories = &["all"];
    daemonsets.subresources = vec![status_sub("apps", "v1", "DaemonSet")];
    daemonsets.columns = printers::daemonsets();
    out.push((daemonsets, status));
    let mut pdbs =
        def("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, &["pdb"]);
    pdbs.subresources = vec![status_sub("policy", "v1", "PodDisruptionBudget")];
    pdbs.columns = printers::pod_disruption_budgets();
    out.push((pdbs, status));

    let mut lease = def("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, &[]);
    lease.columns.push(col("Holder", 0, |o| cell(o, "/spec/holderIdentity")));
    out.push((lease, plain));

    let mut apis = def("apiregistration.k8s.io", "v1", "apiservices", "apiservice", "APIService", false, &[]);
    apis.subresources.push(status_sub("apiregistration.k8s.io", "v1", "APIService"));
    apis.columns = vec![
        col("Service", 0, |o| match o["spec"]["service"].as_object() {
            Some(s) => json!(format!("{}/{}", s["namespace"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or(""))),
            None => json!("Local"),
        }),
        col("Available", 0, apiservice_available),
    ];
    out.push((apis, status));
    out
}

/// The create-only review kinds (never stored).
pub fn reviews() -> Vec<ResourceDef> {
    let tr = def("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", false, &[]);
    let sar = def(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
        &[],
    );
    vec![tr, sar]
}

/// The schemas of what the subresources of the served kinds take that are
/// not kinds themselves: Binding (core/v1) and Eviction (policy/v1).
pub fn subresource_schemas() -> sks_rest::openapi::ExtraSchemas {
    let schema = |group: &str, kind: &str, description: &str| {
        let version = "v1";
        (
            sks_rest::openapi::definition_name(group, version, kind),
            json!({"description": description, "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}]}),
        )
    };
    vec![
        schema(
            "",
            "Binding",
            "Binding ties one object to another; for example, a pod is bound to a node by a scheduler.",
        ),
        schema(
            "policy",
            "Eviction",
            "Eviction evicts a pod from its node subject to certain policies and safety constraints.",
        ),
    ]
}
