//! Exoscale's own CLI against sks-zone. A session of `exo` v1.97.0 commands
//! (`compute sks`, `instance`, `instance-pool`, `load-balancer`) is replayed
//! call by call, each request shaped as egoscale v3.1.42 serialises it: whole
//! objects where the spec names a reference (the instance type and security
//! group the CLI listed), `null` for unset nullable fields, Go's zero time in
//! a template named by id. Every write must be accepted and kept, every read
//! the commands make served, and every answer must conform to the spec and
//! carry what the zone's completeness rule asks for (the CLI dereferences
//! `auto-upgrade`, `tpm-enabled`, a nodepool's template...).

use std::time::Duration;

use serde_json::{Value, json};
use sks_e2e::proxy::{Proxy, review};
use sks_e2e::wait_for;
use sks_e2e::zone::{Zone, ZoneOptions, signed_request};

/// The reads those `exo` commands make (egoscale's `List*`/`Get*` calls in
/// the CLI's cmd/compute/{sks,instance,instance_pool,load_balancer}), each of
/// which the session below makes at least once.
const EXO_READS: &[&str] = &[
    "list-zones",
    "get-operation",
    "list-sks-clusters",
    "list-sks-cluster-versions",
    "list-sks-cluster-deprecated-resources",
    "get-sks-cluster-authority-cert",
    "get-active-nodepool-template",
    "list-instance-types",
    "get-instance-type",
    "list-templates",
    "get-template",
    "list-security-groups",
    "get-security-group",
    "list-anti-affinity-groups",
    "get-anti-affinity-group",
    "list-private-networks",
    "get-private-network",
    "list-elastic-ips",
    "get-elastic-ip",
    "list-deploy-targets",
    "list-snapshots",
    "get-snapshot",
    "list-instances",
    "get-instance",
    "get-reverse-dns-instance",
    "list-instance-pools",
    "list-load-balancers",
];

/// Egoscale's zero `time.Time`, which it sends in `&Template{ID: ...}`.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Replays `exo`'s calls through the recording proxy, signed as egoscale signs them.
struct Exo {
    base: String,
}

impl Exo {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string);
        signed_request(&self.base, method, path, body.as_deref(), None, 600).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path} {body:?}: {answer}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None).await
    }

    /// A write followed by egoscale's `Wait(op, success)`: the final operation.
    async fn write(&self, method: &str, path: &str, body: &Value) -> Value {
        let op = self.ok(method, path, Some(body)).await;
        let id = op["id"].as_str().expect("an operation id").to_owned();
        let done = wait_for(&format!("operation of {method} {path}"), Duration::from_secs(20), || async {
            let op = self.get(&format!("/operation/{id}")).await;
            (op["state"] != "pending").then_some(op)
        })
        .await;
        assert_eq!(done["state"], "success", "{method} {path}: {done}");
        done
    }

    /// `SwitchClientZoneV3`: every command with `-z` reads the zone's endpoint first.
    async fn switch_zone(&self) {
        let zones = self.get("/zone").await;
        assert!(zones["zones"].as_array().unwrap().iter().any(|z| z["name"] == "ch-gva-2"), "{zones}");
    }
}

/// egoscale's `Find*` on a listing: by id or name.
fn find<'a>(list: &'a Value, key: &str, name_or_id: &str) -> &'a Value {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .find(|x| x["id"] == name_or_id || x["name"] == name_or_id)
        .unwrap_or_else(|| panic!("{name_or_id} not in {key}"))
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

/// `lookupInstanceType`: the listed type, sent whole.
async fn listed_instance_type(exo: &Exo, family_size: &str) -> Value {
    let types = exo.get("/instance-type").await;
    let (family, size) = family_size.split_once('.').unwrap();
    let found = types["instance-types"].as_array().unwrap().iter().find(|t| t["family"] == family && t["size"] == size);
    found.unwrap_or_else(|| panic!("no {family_size}")).clone()
}

/// `lookupSecurityGroups`: one listing per name, each group sent whole.
async fn listed_security_groups(exo: &Exo, names: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    for name in names {
        out.push(find(&exo.get("/security-group").await, "security-groups", name).clone());
    }
    out
}

/// The nodepool `createNodepoolRequest` builds for `--nodepool-*` / `nodepool add` flags:
/// `--size 2 --label role=NAME --taint dedicated=NAME:NoSchedule --security-group ...`.
async fn nodepool_request(exo: &Exo, name: &str, security_groups: &[&str]) -> Value {
    let mut body = json!({
        "disk-size": 50,
        "instance-type": listed_instance_type(exo, "standard.medium").await,
        "kubelet-image-gc": {"high-threshold": 85, "low-threshold": 80, "min-age": "2m"},
        "labels": {"role": name},
        "name": name,
        "public-ip-assignment": "inet4",
        "size": 2,
        "taints": {"dedicated": {"effect": "NoSchedule", "value": name}},
    });
    if !security_groups.is_empty() {
        body["security-groups"] = json!(listed_security_groups(exo, security_groups).await);
    }
    body
}

/// `exo compute sks create NAME --nodepool-name NP` (plus the nodepool flags
/// of [`nodepool_request`]): the cluster's id.
async fn sks_create(exo: &Exo, name: &str, nodepool: &str) -> String {
    exo.switch_zone().await;
    let latest = exo.get("/sks-cluster-version").await["sks-cluster-versions"][0].clone();
    let body = json!({"addons": ["exoscale-cloud-controller", "metrics-server"], "auto-upgrade": false,
        "cni": "calico", "level": "pro", "name": name, "version": latest});
    let cluster = exo.write("POST", "/sks-cluster", &body).await["reference"]["id"].as_str().unwrap().to_owned();
    let body = nodepool_request(exo, nodepool, &[]).await;
    exo.write("POST", &format!("/sks-cluster/{cluster}/nodepool"), &body).await;
    cluster
}

/// `exo compute sks nodepool add CLUSTER NAME --security-group GROUP...` (plus the
/// flags of [`nodepool_request`]).
async fn sks_nodepool_add(exo: &Exo, cluster: &str, name: &str, security_groups: &[&str]) {
    exo.switch_zone().await;
    let cluster = id(find(&exo.get("/sks-cluster").await, "sks-clusters", cluster)).to_owned();
    let body = nodepool_request(exo, name, security_groups).await;
    exo.write("POST", &format!("/sks-cluster/{cluster}/nodepool"), &body).await;
}

/// The cluster named `name` (or with that id), as every `exo compute sks` command finds it.
async fn listed_cluster(exo: &Exo, name: &str) -> Value {
    exo.switch_zone().await;
    find(&exo.get("/sks-cluster").await, "sks-clusters", name).clone()
}

/// `exo compute sks show NAME`: the cluster, with the booleans it dereferences.
async fn sks_show(exo: &Exo, name: &str) -> Value {
    let cluster = listed_cluster(exo, name).await;
    for flag in ["auto-upgrade", "enable-kube-proxy"] {
        assert!(cluster[flag].is_boolean(), "exo reads {flag} without a check: {cluster}");
    }
    cluster
}

/// `exo compute sks nodepool show CLUSTER NP`: the nodepool, after looking up
/// what it references.
async fn sks_nodepool_show(exo: &Exo, cluster: &str, nodepool: &str) -> Value {
    let np = find(&listed_cluster(exo, cluster).await, "nodepools", nodepool).clone();
    assert!(np["instance-pool"]["id"].is_string(), "exo reads the instance pool's id: {np}");
    for (key, path) in [
        ("anti-affinity-groups", "/anti-affinity-group"),
        ("private-networks", "/private-network"),
        ("security-groups", "/security-group"),
    ] {
        for r in np[key].as_array().into_iter().flatten() {
            assert!(exo.get(&format!("{path}/{}", id(r))).await["name"].is_string());
        }
    }
    let family = exo.get(&format!("/instance-type/{}", id(&np["instance-type"]))).await["family"].clone();
    assert!(family.is_string());
    assert!(exo.get(&format!("/template/{}", id(&np["template"]))).await["name"].is_string());
    np
}

/// `exo compute instance create NAME --template T --security-group default --ssh-key ops --secureboot --tpm`.
async fn instance_create(exo: &Exo, name: &str, template: &str) -> String {
    exo.switch_zone().await;
    let group = find(&exo.get("/security-group").await, "security-groups", "default").clone();
    let instance_type = listed_instance_type(exo, "standard.medium").await;
    let template = find(&exo.get("/template?visibility=public").await, "templates", template).clone();
    let body = json!({"disk-size": 50, "instance-type": instance_type, "name": name,
        "public-ip-assignment": "inet4", "secureboot-enabled": true, "security-groups": [{"id": id(&group)}],
        "ssh-keys": [{"name": "ops"}], "template": {"created-at": GO_ZERO_TIME, "id": id(&template)},
        "tpm-enabled": true});
    exo.write("POST", "/instance", &body).await["reference"]["id"].as_str().unwrap().to_owned()
}

/// `exo compute instance show NAME`: the instance, after the look-ups the CLI makes.
async fn instance_show(exo: &Exo, name: &str) -> Value {
    exo.switch_zone().await;
    let listed = find(&exo.get("/instance").await, "instances", name).clone();
    let instance = exo.get(&format!("/instance/{}", id(&listed))).await;
    for flag in ["secureboot-enabled", "tpm-enabled"] {
        assert!(instance[flag].is_boolean(), "exo reads {flag} without a check: {instance}");
    }
    for (key, list, item) in [
        ("anti-affinity-groups", "/anti-affinity-group", "anti-affinity-groups"),
        ("elastic-ips", "/elastic-ip", "elastic-ips"),
        ("private-networks", "/private-network", "private-networks"),
        ("security-groups", "/security-group", "security-groups"),
    ] {
        for r in instance[key].as_array().into_iter().flatten() {
            find(&exo.get(list).await, item, id(r));
        }
    }
    assert!(exo.get(&format!("/instance-type/{}", id(&instance["instance-type"]))).await["size"].is_string());
    assert!(exo.get(&format!("/template/{}", id(&instance["template"]))).await["name"].is_string());
    // No record is an answer the CLI expects (it shows none); anything but 404 fails it.
    let (status, answer) = exo.call("GET", &format!("/reverse-dns/instance/{}", id(&instance)), None).await;
    assert_eq!(status, 404, "{answer}");
    instance
}

/// `exo compute instance-pool create NAME --template T --size 2 --ssh-key ops --security-group default`.
async fn instance_pool_create(exo: &Exo, name: &str, template: &str) -> String {
    exo.switch_zone().await;
    let group = find(&exo.get("/security-group").await, "security-groups", "default").clone();
    let instance_type = listed_instance_type(exo, "standard.medium").await;
    let template = find(&exo.get("/template?visibility=public").await, "templates", template).clone();
    let body = json!({"disk-size": 50, "instance-type": instance_type, "ipv6-enabled": false, "name": name,
        "security-groups": [{"id": id(&group)}], "size": 2, "ssh-key": {"name": "ops"},
        "template": {"created-at": GO_ZERO_TIME, "id": id(&template)}});
    exo.write("POST", "/instance-pool", &body).await["reference"]["id"].as_str().unwrap().to_owned()
}

/// `exo compute instance-pool show NAME`.
async fn instance_pool_show(exo: &Exo, name: &str) -> Value {
    exo.switch_zone().await;
    let pool = find(&exo.get("/instance-pool").await, "instance-pools", name).clone();
    for (key, path) in [
        ("anti-affinity-groups", "/anti-affinity-group"),
        ("elastic-ips", "/elastic-ip"),
        ("instances", "/instance"),
        ("private-networks", "/private-network"),
        ("security-groups", "/security-group"),
    ] {
        for r in pool[key].as_array().into_iter().flatten() {
            exo.get(&format!("{path}/{}", id(r))).await;
        }
    }
    exo.get(&format!("/instance-type/{}", id(&pool["instance-type"]))).await;
    exo.get(&format!("/template/{}", id(&pool["template"]))).await;
    pool
}

/// `exo compute load-balancer create NAME --description D` and `service add NAME http
/// --instance-pool POOL --port 80` with the CLI's defaults.
async fn nlb_with_service(exo: &Exo, name: &str, pool: &str) -> Value {
    exo.switch_zone().await;
    let body = json!({"description": "ingress", "name": name});
    let nlb = exo.write("POST", "/load-balancer", &body).await["reference"]["id"].as_str().unwrap().to_owned();
    exo.switch_zone().await;
    find(&exo.get("/load-balancer").await, "load-balancers", name);
    let pool = find(&exo.get("/instance-pool").await, "instance-pools", pool).clone();
    let body = json!({"healthcheck": {"interval": 10, "mode": "tcp", "port": 80, "retries": 1, "timeout": 5},
        "instance-pool": {"id": id(&pool)}, "name": "http", "port": 80, "protocol": "tcp",
        "strategy": "round-robin", "target-port": 80});
    exo.write("POST", &format!("/load-balancer/{nlb}/service"), &body).await;
    let shown = find(&exo.get("/load-balancer").await, "load-balancers", name).clone();
    let service = find(&shown, "services", "http");
    assert!(service["instance-pool"]["id"].is_string() && service["healthcheck"]["mode"] == "tcp", "{service}");
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exo_cli_session_is_served_and_every_answer_is_complete() {
    // Operations stay pending a moment, so every write is followed by egoscale's polling.
    let zone = Zone::start(ZoneOptions { operation_delay_ms: 100, ..Default::default() });
    let proxy = Proxy::start(&zone.url).await;
    let exo = Exo { base: format!("{}/v2", proxy.url) };

    // SKS: create with a first nodepool, add one, show, scale, update, and the cluster's extras.
    let cluster = sks_create(&exo, "demo", "workers").await;
    sks_nodepool_add(&exo, "demo", "infra", &["default"]).await;
    assert_eq!(sks_nodepool_show(&exo, "demo", "workers").await["labels"], json!({"role": "workers"}));
    let np = sks_nodepool_show(&exo, "demo", "infra").await;
    let kept = [
        ("labels", json!({"role": "infra"})),
        ("taints", json!({"dedicated": {"effect": "NoSchedule", "value": "infra"}})),
        ("kubelet-image-gc", json!({"high-threshold": 85, "low-threshold": 80, "min-age": "2m"})),
        ("public-ip-assignment", json!("inet4")),
    ];
    for (key, sent) in &kept {
        assert_eq!(&np[key], sent, "{key} as sent at creation");
    }
    let default_group = listed_security_groups(&exo, &["default"]).await.remove(0);
    assert_eq!(np["security-groups"], json!([{"id": id(&default_group)}]), "stored as a reference");

    let path = format!("/sks-cluster/{cluster}/nodepool/{}", id(&np));
    exo.write("PUT", &format!("{path}:scale"), &json!({"size": 3})).await;
    assert_eq!(sks_nodepool_show(&exo, "demo", "infra").await["size"], 3);
    let body = json!({"deploy-target": null, "description": "infra nodes", "nvidia-mig-profiles": null});
    exo.write("PUT", &path, &body).await;
    let np = sks_nodepool_show(&exo, "demo", "infra").await;
    assert_eq!(np["description"], "infra nodes");
    for (key, sent) in &kept {
        assert_eq!(&np[key], sent, "{key} kept by an update that sends null for what it leaves alone");
    }
    let body = json!({"auto-upgrade": true, "feature-gates": null, "oidc": null});
    exo.write("PUT", &format!("/sks-cluster/{cluster}"), &body).await;
    let shown = sks_show(&exo, "demo").await;
    assert_eq!((&shown["auto-upgrade"], &shown["enable-kube-proxy"]), (&json!(true), &json!(true)));
    assert_eq!(shown["addons"], json!(["exoscale-cloud-controller", "metrics-server"]));
    let version = shown["version"].as_str().unwrap();
    exo.get(&format!("/sks-cluster/{cluster}/authority/kubelet/cert")).await;
    exo.get(&format!("/sks-cluster-deprecated-resources/{cluster}")).await;
    exo.get(&format!("/sks-template/{version}/standard")).await;

    // A standalone instance with the security features exo shows.
    instance_create(&exo, "vm", "Linux Ubuntu 24.04 LTS 64-bit").await;
    let vm = instance_show(&exo, "vm").await;
    assert_eq!((&vm["secureboot-enabled"], &vm["tpm-enabled"]), (&json!(true), &json!(true)));
    assert_eq!(vm["security-groups"], json!([{"id": id(&default_group)}]));
    exo.get("/snapshot").await;
    let (status, _) = exo.call("GET", &format!("/snapshot/{}", uuid::Uuid::new_v4()), None).await;
    assert_eq!(status, 404);

    // An instance pool behind an NLB.
    instance_pool_create(&exo, "web", "Linux Debian 12 (Bookworm) 64-bit").await;
    let pool = wait_for("2 pool members", Duration::from_secs(20), || async {
        let pool = instance_pool_show(&exo, "web").await;
        (pool["instances"].as_array().map(Vec::len) == Some(2)).then_some(pool)
    })
    .await;
    assert_eq!(pool["ssh-key"], json!({"name": "ops"}));
    nlb_with_service(&exo, "lb", "web").await;

    // The look-ups of resources the account has none of: empty lists, 404 by id.
    for (list, key) in [
        ("/anti-affinity-group", "anti-affinity-groups"),
        ("/private-network", "private-networks"),
        ("/elastic-ip", "elastic-ips"),
        ("/deploy-target", "deploy-targets"),
    ] {
        assert_eq!(exo.get(list).await, json!({ key: [] }));
        if list != "/deploy-target" {
            let (status, answer) = exo.call("GET", &format!("{list}/{}", uuid::Uuid::new_v4()), None).await;
            assert_eq!(status, 404, "{list}: {answer}");
        }
    }

    let (calls, problems) = review(&proxy.exchanges());
    assert!(problems.is_empty(), "spec or completeness violations:\n{}", problems.join("\n"));
    let unserved: Vec<&str> =
        EXO_READS.iter().copied().filter(|op| !calls.iter().any(|c| c.operation == *op && c.status != 501)).collect();
    assert!(unserved.is_empty(), "reads exo makes that the session did not get served: {unserved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepool_scale_shows_the_nodepool_with_its_template() {
    // `exo compute sks nodepool scale demo workers 4 --force` on the seeded
    // cluster, which shows the nodepool afterwards: that show looks up the
    // nodepool's instance type and template.
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let exo = Exo { base: zone.endpoint() };
    let cluster = listed_cluster(&exo, "demo").await;
    let np = find(&cluster, "nodepools", "workers");
    let path = format!("/sks-cluster/{}/nodepool/{}:scale", id(&cluster), id(np));
    exo.write("PUT", &path, &json!({"size": 4})).await;
    let np = sks_nodepool_show(&exo, "demo", "workers").await;
    assert_eq!(np["size"], 4);
    let template = exo.get(&format!("/template/{}", id(&np["template"]))).await;
    assert_eq!(template["version"], np["version"], "an SKS node template of the nodepool's version: {template}");
}
