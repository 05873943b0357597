//! The API refuses what kube-apiserver refuses, in its words: each case
//! writes an object kube-apiserver finds invalid and checks the 422
//! `Invalid` Status (message and `details.causes`). The cases talk HTTP to
//! whatever API the harness starts, so they run unchanged against real
//! binaries (KUBE_ASSETS).

use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sks_e2e::kubeapi::{KubeApi, KubeOptions};

/// One expected cause: field, reason, message.
type Expected<'a> = (&'a str, &'a str, &'a str);

struct Api {
    _api: KubeApi,
    client: kube::Client,
}

impl Api {
    async fn start() -> Api {
        let api = KubeApi::start(KubeOptions::default()).await;
        let client = api.client().await;
        Api { _api: api, client }
    }

    /// Sends `body` with `method` to `path`; answers the status code and the JSON body.
    async fn send(&self, method: &str, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, "application/json", &body).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PUT", path, "application/json", &body).await
    }

    async fn merge(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PATCH", path, "application/merge-patch+json", &body).await
    }

    async fn get(&self, path: &str) -> Value {
        let req = http::Request::get(path).body(kube::client::Body::empty()).unwrap();
        let resp = self.client.send(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Writes what must be accepted.
    async fn accepted(&self, (code, body): (u16, Value)) -> Value {
        assert!((200..300).contains(&code), "refused ({code}): {body}");
        body
    }
}

/// kube-apiserver's message for `causes`: `<Kind> "<name>" is invalid: ...`,
/// each distinct `field: message` once, several in brackets.
fn message(kind: &str, name: &str, causes: &[Expected<'_>]) -> String {
    let mut list: Vec<String> = Vec::new();
    for (field, _, msg) in causes {
        let line = format!("{field}: {msg}");
        if !list.contains(&line) {
            list.push(line);
        }
    }
    let list = if list.len() == 1 { list.remove(0) } else { format!("[{}]", list.join(", ")) };
    format!("{kind} \"{name}\" is invalid: {list}")
}

/// Asserts a 422 Invalid Status about `<kind> "<name>"` with exactly `causes`.
#[track_caller]
fn refused((code, status): (u16, Value), kind: &str, name: &str, causes: &[Expected<'_>]) {
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert_eq!(status["message"].as_str(), Some(message(kind, name, causes).as_str()), "{status}");
    let got: Vec<(String, String, String)> = status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            (s("field"), s("reason"), s("message"))
        })
        .collect();
    let want: Vec<(String, String, String)> =
        causes.iter().map(|(f, r, m)| (f.to_string(), r.to_string(), m.to_string())).collect();
    assert_eq!(got, want, "{status}");
    assert_eq!(status["details"]["name"].as_str(), Some(name), "{status}");
}

const SVCS: &str = "/api/v1/namespaces/default/services";
const LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const RANGE_ERR: &str = "must be between 1 and 65535, inclusive";

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let svc = |name: &str, spec: Value| api.post(SVCS, service(name, spec));

    // The example of issue 15, as kube-apiserver printed it.
    let (code, status) = svc("lb-0", json!({"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]})).await;
    assert_eq!(
        status["message"],
        "Service \"lb-0\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]"
    );
    refused(
        (code, status),
        "Service",
        "lb-0",
        &[
            ("spec.ports[0].name", "FieldValueRequired", "Required value"),
            ("spec.ports[1].name", "FieldValueRequired", "Required value"),
        ],
    );
    refused(
        svc("web", json!({"ports": [{"name": "HTTP", "port": 80}]})).await,
        "Service",
        "web",
        &[("spec.ports[0].name", "FieldValueInvalid", &format!("Invalid value: \"HTTP\": {LABEL_ERR}"))],
    );
    refused(
        svc("web", json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]})).await,
        "Service",
        "web",
        &[("spec.ports[1].name", "FieldValueDuplicate", "Duplicate value: \"a\"")],
    );
    refused(
        svc("web", json!({"ports": [{"port": 70000}]})).await,
        "Service",
        "web",
        &[
            ("spec.ports[0].port", "FieldValueInvalid", &format!("Invalid value: 70000: {RANGE_ERR}")),
            ("spec.ports[0].targetPort", "FieldValueInvalid", &format!("Invalid value: 70000: {RANGE_ERR}")),
        ],
    );
    refused(
        svc("web", json!({"ports": [{"port": 80, "targetPort": 70000}]})).await,
        "Service",
        "web",
        &[("spec.ports[0].targetPort", "FieldValueInvalid", &format!("Invalid value: 70000: {RANGE_ERR}"))],
    );
    refused(
        svc("web", json!({"ports": [{"port": 80, "protocol": "HTTP"}]})).await,
        "Service",
        "web",
        &[(
            "spec.ports[0].protocol",
            "FieldValueNotSupported",
            "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        )],
    );
    refused(
        svc("web", json!({"ports": [{"name": "a", "port": 53, "protocol": "UDP"}, {"name": "b", "port": 53, "protocol": "UDP"}]}))
            .await,
        "Service",
        "web",
        &[(
            "spec.ports[1]",
            "FieldValueDuplicate",
            "Duplicate value: {\"Name\":\"\",\"Protocol\":\"UDP\",\"AppProtocol\":null,\"Port\":53,\"TargetPort\":0,\"NodePort\":0}",
        )],
    );
    refused(
        svc("web", json!({"type": "Bogus", "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.type",
            "FieldValueNotSupported",
            "Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        )],
    );
    refused(
        svc("web", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]})).await,
        "Service",
        "web",
        &[(
            "spec.ports[0].nodePort",
            "FieldValueInvalid",
            "Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767",
        )],
    );
    refused(
        svc("web", json!({"ports": [{"port": 80, "nodePort": 30080}]})).await,
        "Service",
        "web",
        &[("spec.ports[0].nodePort", "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'")],
    );
    refused(
        svc("web", json!({"type": "LoadBalancer", "ports": [{"port": 10250}]})).await,
        "Service",
        "web",
        &[(
            "spec.ports[0]",
            "FieldValueInvalid",
            "Invalid value: 10250: may not expose port 10250 externally since it is used by kubelet",
        )],
    );
    refused(
        svc("web", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Nearest", "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.externalTrafficPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\"",
        )],
    );
    refused(
        svc("web", json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.externalTrafficPolicy",
            "FieldValueInvalid",
            "Invalid value: \"Local\": may only be set for externally-accessible services",
        )],
    );
    refused(
        svc("web", json!({"type": "NodePort", "healthCheckNodePort": 31000, "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.healthCheckNodePort",
            "FieldValueInvalid",
            "Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        )],
    );
    refused(
        svc("web", json!({"loadBalancerClass": "example.com/lb", "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.loadBalancerClass",
            "FieldValueForbidden",
            "Forbidden: may only be used when `type` is 'LoadBalancer'",
        )],
    );
    refused(
        svc("web", json!({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})).await,
        "Service",
        "web",
        &[(
            "spec.sessionAffinity",
            "FieldValueNotSupported",
            "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
        )],
    );
    refused(
        svc("web", json!({"type": "ExternalName"})).await,
        "Service",
        "web",
        &[("spec.externalName", "FieldValueRequired", "Required value")],
    );
    refused(svc("web", json!({})).await, "Service", "web", &[("spec.ports", "FieldValueRequired", "Required value")]);
    refused(
        svc("1web", json!({"ports": [{"port": 80}]})).await,
        "Service",
        "1web",
        &[(
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        )],
    );

    // Updates: the load-balancer class is fixed once set; status writes are validated too.
    let lb =
        json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": [{"name": "http", "port": 80}]});
    api.accepted(svc("lb", lb).await).await;
    let path = format!("{SVCS}/lb");
    refused(
        api.merge(&path, json!({"spec": {"loadBalancerClass": "example.com/other"}})).await,
        "Service",
        "lb",
        &[(
            "spec.loadBalancerClass",
            "FieldValueInvalid",
            "Invalid value: \"example.com/other\": may not change once set",
        )],
    );
    refused(
        api.merge(&path, json!({"spec": {"ports": [{"name": "http", "port": 80, "protocol": "ICMP"}]}})).await,
        "Service",
        "lb",
        &[(
            "spec.ports[0].protocol",
            "FieldValueNotSupported",
            "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        )],
    );
    refused(
        api.merge(&format!("{path}/status"), json!({"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}}))
            .await,
        "Service",
        "lb",
        &[(
            "status.loadBalancer.ingress[0].ip",
            "FieldValueInvalid",
            "Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )],
    );
    let with_ip = api
        .accepted(
            api.merge(
                &format!("{path}/status"),
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}),
            )
            .await,
        )
        .await;
    assert_eq!(with_ip["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP", "ipMode defaults to VIP");
    api.accepted(svc("internal", json!({"ports": [{"name": "http", "port": 80}]})).await).await;
    refused(
        api.merge(
            &format!("{SVCS}/internal/status"),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.8"}]}}}),
        )
        .await,
        "Service",
        "internal",
        &[(
            "status.loadBalancer.ingress",
            "FieldValueForbidden",
            "Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
        )],
    );
}

const NODES: &str = "/api/v1/nodes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let node =
        |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec});
    refused(
        api.post(
            NODES,
            node(
                "n1",
                json!({"taints": [{"key": "dedicated", "value": "a", "effect": "NoSchedule"}, {"key": "dedicated", "value": "b", "effect": "NoSchedule"}]}),
            ),
        )
        .await,
        "Node",
        "n1",
        &[(
            "metadata.taints[1]",
            "FieldValueDuplicate",
            "Duplicate value: {\"Key\":\"dedicated\",\"Value\":\"b\",\"Effect\":\"NoSchedule\",\"TimeAdded\":null}: taints must be unique by key and effect pair",
        )],
    );
    refused(
        api.post(NODES, node("n1", json!({"taints": [{"key": "dedicated", "effect": "Sometimes"}]}))).await,
        "Node",
        "n1",
        &[(
            "metadata.taints[0].effect",
            "FieldValueNotSupported",
            "Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        )],
    );
    refused(
        api.post(NODES, node("n1", json!({"taints": [{"key": "dedicated"}]}))).await,
        "Node",
        "n1",
        &[("metadata.taints[0].effect", "FieldValueRequired", "Required value")],
    );
    refused(
        api.post(NODES, node("n1", json!({"taints": [{"key": "bad key", "effect": "NoSchedule"}]}))).await,
        "Node",
        "n1",
        &[("metadata.taints[0].key", "FieldValueInvalid", &format!("Invalid value: \"bad key\": {NAME_PART_ERR}"))],
    );
    refused(
        api.post(NODES, node("n1", json!({"taints": [{"key": "dedicated", "value": "a b", "effect": "NoSchedule"}]})))
            .await,
        "Node",
        "n1",
        &[(
            "metadata.taints[0].value",
            "FieldValueInvalid",
            "Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        )],
    );
    refused(
        api.post(NODES, node("N1", json!({}))).await,
        "Node",
        "N1",
        &[(
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"N1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
    );

    // providerID may be set once, never changed.
    api.accepted(api.post(NODES, node("n1", json!({}))).await).await;
    api.accepted(api.merge(&format!("{NODES}/n1"), json!({"spec": {"providerID": "exoscale://a"}})).await).await;
    let forbidden = "Forbidden: node updates may not change providerID except from \"\" to valid";
    refused(
        api.merge(&format!("{NODES}/n1"), json!({"spec": {"providerID": "exoscale://b"}})).await,
        "Node",
        "n1",
        &[("spec.providerID", "FieldValueForbidden", forbidden)],
    );
    refused(
        api.merge(&format!("{NODES}/n1"), json!({"spec": {"taints": [{"key": "dedicated", "effect": "Never"}]}})).await,
        "Node",
        "n1",
        &[(
            "metadata.taints[0].effect",
            "FieldValueNotSupported",
            "Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        )],
    );
    let address = json!({"type": "InternalIP", "address": "192.0.2.1"});
    refused(
        api.merge(&format!("{NODES}/n1/status"), json!({"status": {"addresses": [address, address]}})).await,
        "Node",
        "n1",
        &[(
            "status.addresses[1]",
            "FieldValueDuplicate",
            "Duplicate value: {\"Type\":\"InternalIP\",\"Address\":\"192.0.2.1\"}",
        )],
    );
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const CSR_KIND: &str = "CertificateSigningRequest.certificates.k8s.io";

fn csr_request() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["n1".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:n1");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    base64::engine::general_purpose::STANDARD.encode(params.serialize_request(&key).unwrap().pem().unwrap())
}

fn csr(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name}, "spec": spec})
}

/// CSR `c` as stored, with `conditions` instead of its own.
async fn with_conditions(api: &Api, conditions: Value) -> Value {
    let mut c = api.get(&format!("{CSRS}/c")).await;
    c["status"]["conditions"] = conditions;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrs_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let request = csr_request();
    let serving = |signer: &str, request: &str| json!({"signerName": signer, "request": request, "usages": ["digital signature", "key encipherment", "server auth"]});
    refused(
        api.post(CSRS, csr("c", serving("kubernetes.io/kubelet-serving", "bm90IGEgcmVxdWVzdA=="))).await,
        CSR_KIND,
        "c",
        &[(
            "spec.request",
            "FieldValueInvalid",
            "Invalid value: \"bm90IGEgcmVxdWVzdA==\": PEM block type must be CERTIFICATE REQUEST",
        )],
    );
    refused(
        api.post(CSRS, csr("c", serving("", &request))).await,
        CSR_KIND,
        "c",
        &[("spec.signerName", "FieldValueRequired", "Required value")],
    );
    refused(
        api.post(CSRS, csr("c", serving("kubelet-serving", &request))).await,
        CSR_KIND,
        "c",
        &[(
            "spec.signerName",
            "FieldValueInvalid",
            "Invalid value: \"kubelet-serving\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )],
    );
    refused(
        api.post(CSRS, csr("c", serving("example/serving", &request))).await,
        CSR_KIND,
        "c",
        &[(
            "spec.signerName",
            "FieldValueInvalid",
            "Invalid value: \"example\": should be a domain with at least two segments separated by dots",
        )],
    );
    refused(
        api.post(CSRS, csr("c", json!({"signerName": "kubernetes.io/kubelet-serving", "request": request}))).await,
        CSR_KIND,
        "c",
        &[("spec.usages", "FieldValueRequired", "Required value")],
    );
    refused(
        api.post(
            CSRS,
            csr("c", json!({"signerName": "kubernetes.io/kubelet-serving", "request": request, "usages": ["server auth", "flying"]})),
        )
        .await,
        CSR_KIND,
        "c",
        &[(
            "spec.usages[1]",
            "FieldValueNotSupported",
            "Unsupported value: \"flying\": supported values: \"any\", \"cert sign\", \"client auth\", \"code signing\", \"content commitment\", \"crl sign\", \"data encipherment\", \"decipher only\", \"digital signature\", \"email protection\", \"encipher only\", \"ipsec end system\", \"ipsec tunnel\", \"ipsec user\", \"key agreement\", \"key encipherment\", \"microsoft sgc\", \"netscape sgc\", \"ocsp signing\", \"s/mime\", \"server auth\", \"signing\", \"timestamping\"",
        )],
    );
    refused(
        api.post(CSRS, {
            let mut c = csr("c", serving("example.com/serving", &request));
            c["spec"]["expirationSeconds"] = json!(60);
            c
        })
        .await,
        CSR_KIND,
        "c",
        &[(
            "spec.expirationSeconds",
            "FieldValueInvalid",
            "Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
        )],
    );

    // Approval: Approved and Denied exclude each other, only True, and only through /approval.
    api.accepted(api.post(CSRS, csr("c", serving("example.com/serving", &request))).await).await;
    let approved = json!({"type": "Approved", "status": "True", "reason": "Test", "message": "ok"});
    let denied = json!({"type": "Denied", "status": "True", "reason": "Test", "message": "no"});
    refused(
        api.put(&format!("{CSRS}/c/approval"), with_conditions(&api, json!([approved, denied])).await).await,
        CSR_KIND,
        "c",
        &[(
            "status.conditions[1].type",
            "FieldValueInvalid",
            "Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
        )],
    );
    refused(
        api.put(
            &format!("{CSRS}/c/approval"),
            with_conditions(&api, json!([{"type": "Approved", "status": "False", "reason": "Test"}])).await,
        )
        .await,
        CSR_KIND,
        "c",
        &[(
            "status.conditions[0].status",
            "FieldValueNotSupported",
            "Unsupported value: \"False\": supported values: \"True\"",
        )],
    );
    refused(
        api.put(&format!("{CSRS}/c/status"), with_conditions(&api, json!([approved])).await).await,
        CSR_KIND,
        "c",
        &[(
            "status.conditions",
            "FieldValueForbidden",
            "Forbidden: updates may not add a condition of type \"Approved\"",
        )],
    );
    api.accepted(api.put(&format!("{CSRS}/c/approval"), with_conditions(&api, json!([approved])).await).await).await;
    refused(
        api.put(&format!("{CSRS}/c/approval"), with_conditions(&api, json!([])).await).await,
        CSR_KIND,
        "c",
        &[(
            "status.conditions",
            "FieldValueForbidden",
            "Forbidden: updates may not remove a condition of type \"Approved\"",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |spec: Value| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": spec});
    let kind = "Lease.coordination.k8s.io";
    refused(
        api.post(leases, lease(json!({"holderIdentity": "n1", "leaseDurationSeconds": 0}))).await,
        kind,
        "n1",
        &[("spec.leaseDurationSeconds", "FieldValueInvalid", "Invalid value: 0: must be greater than 0")],
    );
    refused(
        api.post(leases, lease(json!({"holderIdentity": "n1", "leaseTransitions": -1}))).await,
        kind,
        "n1",
        &[("spec.leaseTransitions", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")],
    );
    api.accepted(api.post(leases, lease(json!({"holderIdentity": "n1", "leaseDurationSeconds": 40}))).await).await;
    refused(
        api.merge(&format!("{leases}/n1"), json!({"spec": {"leaseDurationSeconds": -5}})).await,
        kind,
        "n1",
        &[("spec.leaseDurationSeconds", "FieldValueInvalid", "Invalid value: -5: must be greater than 0")],
    );
}

const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const EVENTS_CORE: &str = "/api/v1/namespaces/default/events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let regarding = json!({"apiVersion": "v1", "kind": "Service", "name": "web", "namespace": "default"});
    let v1 = |name: &str, fields: Value| {
        let mut e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "example.com/tests", "reportingInstance": "tests-1",
            "action": "Testing", "reason": "Tested", "regarding": regarding, "note": "a note", "type": "Normal"});
        for (k, v) in fields.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    // events.k8s.io/v1 wants the new fields; the errors name the stored core/v1 fields.
    refused(
        api.post(EVENTS_V1, v1("e1", json!({"eventTime": null}))).await,
        "Event",
        "e1",
        &[("eventTime", "FieldValueRequired", "Required value")],
    );
    refused(
        api.post(EVENTS_V1, v1("e1", json!({"reportingController": null, "type": "Info"}))).await,
        "Event",
        "e1",
        &[
            ("reportingController", "FieldValueRequired", "Required value"),
            ("reportingController", "FieldValueInvalid", "Invalid value: \"\": name part must be non-empty"),
            ("reportingController", "FieldValueInvalid", &format!("Invalid value: \"\": {NAME_PART_ERR}")),
            ("type", "FieldValueInvalid", "Invalid value: \"\": has invalid value: Info"),
        ],
    );
    refused(
        api.post(EVENTS_V1, v1("e1", json!({"action": null, "deprecatedCount": 3}))).await,
        "Event",
        "e1",
        &[
            ("action", "FieldValueRequired", "Required value"),
            ("count", "FieldValueInvalid", "Invalid value: \"\": needs to be unset"),
        ],
    );
    refused(
        api.post(
            EVENTS_V1,
            v1("e1", json!({"series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}})),
        )
        .await,
        "Event",
        "e1",
        &[("series.count", "FieldValueInvalid", "Invalid value: \"\": should be at least 2")],
    );
    // Only the series of an event may change through events.k8s.io/v1.
    api.accepted(api.post(EVENTS_V1, v1("e1", json!({}))).await).await;
    refused(
        api.merge(&format!("{EVENTS_V1}/e1"), json!({"note": "another note"})).await,
        "Event",
        "e1",
        &[("message", "FieldValueInvalid", "Invalid value: \"another note\": field is immutable")],
    );
    api.accepted(
        api.merge(
            &format!("{EVENTS_V1}/e1"),
            json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}}),
        )
        .await,
    )
    .await;
    // core/v1 keeps its old rules: an old-style event lives in its object's namespace.
    let old_style = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2", "namespace": "default"},
        "involvedObject": {"kind": "Service", "name": "web", "namespace": "other"}, "reason": "Tested", "message": "m", "type": "Normal",
        "source": {"component": "tests"}});
    refused(
        api.post(EVENTS_CORE, old_style.clone()).await,
        "Event",
        "e2",
        &[(
            "involvedObject.namespace",
            "FieldValueInvalid",
            "Invalid value: \"other\": does not match event.namespace",
        )],
    );
    let mut new_style = old_style;
    new_style["involvedObject"]["namespace"] = json!("default");
    new_style["eventTime"] = json!("2026-01-01T00:00:00.000000Z");
    refused(
        api.post(EVENTS_CORE, new_style).await,
        "Event",
        "e2",
        &[
            ("reportingController", "FieldValueRequired", "Required value"),
            ("reportingController", "FieldValueInvalid", "Invalid value: \"\": name part must be non-empty"),
            ("reportingController", "FieldValueInvalid", &format!("Invalid value: \"\": {NAME_PART_ERR}")),
            ("reportingInstance", "FieldValueRequired", "Required value"),
            ("action", "FieldValueRequired", "Required value"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_refused_as_kube_apiserver_refuses_it() {
    let api = Api::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = |meta: Value| {
        let mut m = json!({"namespace": "default"});
        for (k, v) in meta.as_object().unwrap() {
            m[k] = v.clone();
        }
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m})
    };
    refused(
        api.post(cms, cm(json!({"name": "c", "labels": {"bad key": "v"}}))).await,
        "ConfigMap",
        "c",
        &[("metadata.labels", "FieldValueInvalid", &format!("Invalid value: \"bad key\": {NAME_PART_ERR}"))],
    );
    refused(
        api.post(cms, cm(json!({"name": "c", "annotations": {"example.com/bad key": "v"}}))).await,
        "ConfigMap",
        "c",
        &[(
            "metadata.annotations",
            "FieldValueInvalid",
            &format!("Invalid value: \"example.com/bad key\": {NAME_PART_ERR}"),
        )],
    );
    refused(
        api.post(cms, cm(json!({"name": "c", "finalizers": ["hold"]}))).await,
        "ConfigMap",
        "c",
        &[(
            "metadata.finalizers",
            "FieldValueInvalid",
            "Invalid value: \"hold\": name is neither a standard finalizer name nor is it fully qualified",
        )],
    );
    refused(
        api.post(cms, cm(json!({"name": "C_1"}))).await,
        "ConfigMap",
        "C_1",
        &[(
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"C_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
    );
    api.accepted(api.post(cms, cm(json!({"name": "c"}))).await).await;
    refused(
        api.merge(&format!("{cms}/c"), json!({"metadata": {"labels": {"app": "-x"}}})).await,
        "ConfigMap",
        "c",
        &[(
            "metadata.labels",
            "FieldValueInvalid",
            "Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        )],
    );
}

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "web", "image": "registry.example/web:1"});
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    c
}

/// Asserts a refusal that is not a 422: code, reason and message.
#[track_caller]
fn refused_with((code, status): (u16, Value), expected: (u16, &str, &str)) {
    assert_eq!(
        (code, status["reason"].as_str(), status["message"].as_str()),
        (expected.0, Some(expected.1), Some(expected.2)),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    // kube-apiserver's ServiceAccount admission refuses pods before their validation until the
    // namespace's `default` account exists (kube-controller-manager makes it; the stand-in has none).
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}});
    let (code, _) = api.post("/api/v1/namespaces/default/serviceaccounts", account).await;
    assert!(code == 201 || code == 409, "{code}");
    let create = |name: &str, spec: Value| api.post(PODS, pod(name, spec));

    refused(create("p", json!({})).await, "Pod", "p", &[("spec.containers", "FieldValueRequired", "Required value")]);
    refused(
        create("p", json!({"containers": [{}]})).await,
        "Pod",
        "p",
        &[
            ("spec.containers[0].name", "FieldValueRequired", "Required value"),
            ("spec.containers[0].image", "FieldValueRequired", "Required value"),
        ],
    );
    refused(
        create("p", json!({"containers": [container(json!({})), container(json!({}))]})).await,
        "Pod",
        "p",
        &[("spec.containers[1].name", "FieldValueDuplicate", "Duplicate value: \"web\"")],
    );
    refused(
        create("p", json!({"containers": [container(json!({"name": "Web"}))]})).await,
        "Pod",
        "p",
        &[("spec.containers[0].name", "FieldValueInvalid", &format!("Invalid value: \"Web\": {LABEL_ERR}"))],
    );
    refused(
        create("p", json!({"containers": [container(json!({"resources": {"requests": {"cpu": "-1"}}}))]})).await,
        "Pod",
        "p",
        &[(
            "spec.containers[0].resources.requests[cpu]",
            "FieldValueInvalid",
            "Invalid value: \"-1\": must be greater than or equal to 0",
        )],
    );
    refused_with(
        create("p", json!({"containers": [container(json!({"resources": {"limits": {"memory": "1Gb"}}}))]})).await,
        (
            400,
            "BadRequest",
            "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    );
    refused(
        create("p", json!({"containers": [container(json!({}))], "restartPolicy": "Sometimes"})).await,
        "Pod",
        "p",
        &[(
            "spec.restartPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        )],
    );
    refused(
        create("p", json!({"containers": [container(json!({}))], "nodeSelector": {"disk": "-ssd"}})).await,
        "Pod",
        "p",
        &[(
            "spec.nodeSelector",
            "FieldValueInvalid",
            "Invalid value: \"-ssd\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        )],
    );
    let term = |requirement: Value| json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [requirement]}]}}});
    let terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
    refused(
        create(
            "p",
            json!({"containers": [container(json!({}))], "affinity": term(json!({"key": "zone", "operator": "In"}))}),
        )
        .await,
        "Pod",
        "p",
        &[(
            &format!("{terms}.values"),
            "FieldValueRequired",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        )],
    );
    refused(
        create("p", json!({"containers": [container(json!({}))], "affinity": term(json!({"key": "zone", "operator": "Near", "values": ["a"]}))}))
            .await,
        "Pod",
        "p",
        &[(&format!("{terms}.operator"), "FieldValueInvalid", "Invalid value: \"Near\": not a valid selector operator")],
    );
    refused(
        create("p", json!({"containers": [container(json!({}))], "tolerations": [{"key": "dedicated", "operator": "Exists", "value": "gpu"}]}))
            .await,
        "Pod",
        "p",
        &[(
            "spec.tolerations[0].operator",
            "FieldValueInvalid",
            "Invalid value: {\"Key\":\"dedicated\",\"Operator\":\"Exists\",\"Value\":\"gpu\",\"Effect\":\"\",\"TolerationSeconds\":null}: value must be empty when `operator` is 'Exists'",
        )],
    );
    refused(
        create("p", json!({"containers": [container(json!({}))], "tolerations": [{"key": "dedicated", "value": "gpu", "effect": "Sometimes"}]}))
            .await,
        "Pod",
        "p",
        &[(
            "spec.tolerations[0].effect",
            "FieldValueNotSupported",
            "Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        )],
    );
    refused_with(
        create("p", json!({"containers": [container(json!({}))], "priority": 1000})).await,
        (
            403,
            "Forbidden",
            "pods \"p\" is forbidden: the integer value of priority (1000) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name",
        ),
    );

    // What the autoscaler reads comes back as sent, with kube-apiserver's defaults.
    let sent = json!({"containers": [container(json!({"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}))],
        "nodeName": "n1", "priorityClassName": "system-cluster-critical", "nodeSelector": {"disk": "ssd"},
        "affinity": term(json!({"key": "zone", "operator": "In", "values": ["a"]})),
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "scratch", "emptyDir": {}}]});
    let mut full = pod("p", sent.clone());
    full["metadata"]["annotations"] = json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"});
    // An owner that exists, or the garbage collector would take the pod.
    let owner = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": "default"}});
    let owner = api.accepted(api.post("/api/v1/namespaces/default/configmaps", owner).await).await;
    full["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    let stored = api.accepted(api.post(PODS, full).await).await;
    let spec = &stored["spec"];
    for field in ["nodeName", "priorityClassName", "nodeSelector", "affinity"] {
        assert_eq!(spec[field], sent[field], "{field}");
    }
    // kube-apiserver's ServiceAccount admission adds the token volume.
    assert!(spec["volumes"].as_array().unwrap().contains(&sent["volumes"][0]), "{spec}");
    assert_eq!(spec["containers"][0]["resources"], sent["containers"][0]["resources"]);
    assert_eq!(spec["priority"], 2_000_000_000, "from the class");
    assert_eq!(spec["tolerations"][0], sent["tolerations"][0]);
    assert_eq!(stored["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"], "false");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["name"], "owner");
    assert_eq!(
        (spec["schedulerName"].as_str(), spec["restartPolicy"].as_str()),
        (Some("default-scheduler"), Some("Always"))
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(stored["status"]["phase"], "Pending");

    // The node a pod is bound to is fixed, by an update or a second binding.
    let mut moved = stored.clone();
    moved["spec"]["nodeName"] = json!("n2");
    let (code, status) = api.put(&format!("{PODS}/p"), moved).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    let cause = &status["details"]["causes"][0];
    assert_eq!((cause["field"].as_str(), cause["reason"].as_str()), (Some("spec"), Some("FieldValueForbidden")));
    assert!(
        cause["message"]
            .as_str()
            .unwrap()
            .starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{status}"
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "default"}, "target": {"kind": "Node", "name": "n2"}});
    let (code, status) = api.post(&format!("{PODS}/p/binding"), binding).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
    );
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other", "namespace": "default"}});
    refused_with(
        api.post(&format!("{PODS}/p/eviction"), eviction).await,
        (400, "BadRequest", "name in URL does not match name in Eviction object"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_and_budgets_are_refused_as_kube_apiserver_refuses_them() {
    let api = Api::start().await;
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let template = |labels: Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}});
    let deployment = |name: &str, spec: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"}, "spec": spec});
    refused(
        api.post(deployments, deployment("web", json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "db"}))}))).await,
        "Deployment.apps",
        "web",
        &[
            ("spec.replicas", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
            ("spec.template.metadata.labels", "FieldValueInvalid", "Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"),
        ],
    );
    refused(
        api.post(deployments, deployment("web", json!({"template": template(json!({"app": "web"}))}))).await,
        "Deployment.apps",
        "web",
        &[("spec.selector", "FieldValueRequired", "Required value")],
    );
    let replicasets = "/apis/apps/v1/namespaces/default/replicasets";
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {}, "template": template(json!({"app": "web"}))}});
    refused(
        api.post(replicasets, rs).await,
        "ReplicaSet.apps",
        "web",
        &[("spec.selector", "FieldValueInvalid", "Invalid value: {}: empty selector is invalid for deployment")],
    );

    let budgets = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let pdb = |spec: Value| json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    refused(
        api.post(budgets, pdb(json!({"minAvailable": "50", "selector": {"matchLabels": {"app": "web"}}}))).await,
        "PodDisruptionBudget.policy",
        "web",
        &[(
            "spec.minAvailable",
            "FieldValueInvalid",
            "Invalid value: \"50\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        )],
    );
    refused(
        api.post(budgets, pdb(json!({"maxUnavailable": "150%"}))).await,
        "PodDisruptionBudget.policy",
        "web",
        &[("spec.maxUnavailable", "FieldValueInvalid", "Invalid value: \"150%\": must not be greater than 100%")],
    );
    refused(
        api.post(budgets, pdb(json!({"minAvailable": -1}))).await,
        "PodDisruptionBudget.policy",
        "web",
        &[("spec.minAvailable", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")],
    );

    // Scaling through the scale subresource changes the object, and is checked as an update of it.
    api.accepted(api.post(deployments, deployment("web", json!({"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}))).await).await;
    let scale =
        api.accepted(api.merge(&format!("{deployments}/web/scale"), json!({"spec": {"replicas": 3}})).await).await;
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(3)));
    assert_eq!(scale["status"]["selector"], "app=web");
    assert_eq!(api.get(&format!("{deployments}/web")).await["spec"]["replicas"], 3);
    let (code, _) = api.merge(&format!("{deployments}/web/scale"), json!({"spec": {"replicas": -2}})).await;
    assert_eq!(code, 422);
}
