//! The cluster's Kubernetes API as the `lbs` and `autoscale` scenarios drive
//! it: an admin client (a `system:masters` certificate from the stand-in's
//! CA) over one HTTP/2 connection, Service creation, a Service watch that
//! timestamps each Service's first ingress IP, and Node counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use sks_pki::CertificateAuthority;

/// Namespace of the benchmark's Services.
pub const NAMESPACE: &str = "default";
/// The taint a Node keeps until sks-ccm initializes it.
use sks_keys::taint::UNINITIALIZED;
/// Timeout of one non-watch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Name of the `i`th benchmark Service.
pub fn service_name(i: usize) -> String {
    format!("bench-lb-{i:04}")
}

/// An admin client of the Kubernetes API.
#[derive(Clone)]
pub struct Kube {
    url: String,
    http: reqwest::Client,
}

/// When each Service was first seen with an ingress IP, and the IP.
pub type Ready = Arc<Mutex<HashMap<String, (Instant, String)>>>;

/// Nodes as the API lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCount {
    /// All Nodes.
    pub total: usize,
    /// Nodes with a providerID and without the uninitialized taint.
    pub initialized: usize,
    /// Nodes whose Ready condition is True.
    pub ready: usize,
}

/// When a change of the Node count was seen, in seconds from the start of the wait.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Follow {
    /// The first Node registered or deleted.
    pub first_change_s: Option<f64>,
    /// Exactly the target number of Nodes Ready (new ones Ready, or the removed ones no longer Ready).
    pub ready_s: Option<f64>,
    /// Exactly the target number of Nodes, all initialized.
    pub done_s: f64,
}

fn ingress_ip(svc: &Value) -> Option<String> {
    svc.pointer("/status/loadBalancer/ingress/0/ip").and_then(Value::as_str).map(str::to_owned)
}

/// Sends `method url` with `http` and a JSON `body` (a merge patch for PATCH): status and JSON answer.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method.parse()?, url).timeout(REQUEST_TIMEOUT);
    if let Some(b) = body {
        let kind = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        req = req.header("content-type", kind).body(serde_json::to_vec(b)?);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

impl Kube {
    /// A client as `bench-admin` (`system:masters`), certificate from `cert_dir`'s `ca.crt`/`ca.key`.
    pub fn new(url: &str, cert_dir: &std::path::Path) -> anyhow::Result<Self> {
        let read = |n: &str| std::fs::read_to_string(cert_dir.join(n)).with_context(|| format!("reading {n}"));
        let ca_pem = read("ca.crt")?;
        let ca = CertificateAuthority::from_pem(&ca_pem, &read("ca.key")?)?;
        let cert = ca.issue_client("bench-admin", &["system:masters".to_owned()], Duration::from_secs(86400))?;
        // No client-wide timeout: watches last as long as the phase; other requests set their own.
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
            .identity(reqwest::Identity::from_pem(format!("{}{}", cert.cert_pem, cert.key_pem).as_bytes())?)
            .build()?;
        Ok(Kube { url: url.trim_end_matches('/').to_owned(), http })
    }

    /// `GET path`, its JSON body; an error unless 2xx.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.url)).timeout(REQUEST_TIMEOUT).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    /// Sends `method path` with a JSON `body` (a merge patch for PATCH): status and JSON answer.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        send(&self.http, &format!("{}{path}", self.url), method, body).await
    }

    /// Opens `GET path` without a timeout (a watch); an error unless 2xx.
    pub async fn open(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self.http.get(format!("{}{path}", self.url)).send().await?;
        if !resp.status().is_success() {
            bail!("GET {path}: {}", resp.status());
        }
        Ok(resp)
    }

    /// The API's /metrics text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self.http.get(format!("{}/metrics", self.url)).timeout(REQUEST_TIMEOUT).send().await?;
        Ok(resp.error_for_status()?.text().await?)
    }

    /// The Services of the namespace and the list's resourceVersion. The first
    /// request also opens the HTTP/2 connection every later request shares.
    pub async fn services(&self) -> anyhow::Result<(Vec<Value>, String)> {
        let list = self.get(&format!("/api/v1/namespaces/{NAMESPACE}/services")).await?;
        let rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok((list["items"].as_array().cloned().unwrap_or_default(), rv))
    }

    /// Creates LoadBalancer Service `name` (one TCP port); returns when it was sent and the round trip.
    pub async fn create_service(&self, name: &str, port: u16) -> (Instant, anyhow::Result<Duration>) {
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "sks-bench-lbs"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"name": "web", "port": port, "targetPort": 8080, "protocol": "TCP"}]}
        });
        let sent = Instant::now();
        let result = async {
            let resp = self
                .http
                .post(format!("{}/api/v1/namespaces/{NAMESPACE}/services", self.url))
                .timeout(REQUEST_TIMEOUT)
                .json(&body)
                .send()
                .await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("creating Service {name}: {status}: {}", resp.text().await.unwrap_or_default());
            }
            Ok(sent.elapsed())
        }
        .await;
        (sent, result)
    }

    /// Watches the namespace's Services from `rv` until aborted, recording in
    /// `ready` the first time each one has an ingress IP. A dropped watch is
    /// reopened from the last resourceVersion; an expired one (410) relists, and
    /// Services already ready then count as seen at the relist (later than they were).
    pub async fn watch_ingress(self, mut rv: String, ready: Ready, progress: tokio::sync::watch::Sender<usize>) {
        let record = |svc: &Value| {
            let (Some(name), Some(ip)) = (svc.pointer("/metadata/name").and_then(Value::as_str), ingress_ip(svc))
            else {
                return;
            };
            let mut map = ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !map.contains_key(name) {
                map.insert(name.to_owned(), (Instant::now(), ip));
                progress.send_replace(map.len());
            }
        };
        loop {
            let path = format!("/api/v1/namespaces/{NAMESPACE}/services?watch=1&resourceVersion={rv}");
            let opened = self.http.get(format!("{}{path}", self.url)).send().await;
            let mut expired = false;
            match opened {
                Ok(resp) if resp.status().is_success() => {
                    let mut body = resp.bytes_stream();
                    let mut buf: Vec<u8> = Vec::new();
                    'read: while let Some(Ok(chunk)) = body.next().await {
                        buf.extend_from_slice(&chunk);
                        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=end).collect();
                            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
                            if event["type"] == "ERROR" {
                                expired = true;
                                break 'read;
                            }
                            let object = &event["object"];
                            if let Some(v) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                                rv = v.to_owned();
                            }
                            record(object);
                        }
                    }
                }
                Ok(resp) => {
                    eprintln!("Service watch answered {}; relisting", resp.status());
                    expired = true;
                }
                Err(e) => {
                    eprintln!("Service watch failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if expired {
                match self.services().await {
                    Ok((items, list_rv)) => {
                        items.iter().for_each(record);
                        rv = list_rv;
                    }
                    Err(e) => {
                        eprintln!("relisting Services failed: {e:#}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// How many Nodes exist and how many sks-ccm initialized.
    pub async fn nodes(&self) -> anyhow::Result<NodeCount> {
        let list = self.get("/api/v1/nodes").await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let initialized = items
            .iter()
            .filter(|n| n.pointer("/spec/providerID").and_then(Value::as_str).is_some_and(|p| !p.is_empty()))
            .filter(|n| {
                let taints = n.pointer("/spec/taints").and_then(Value::as_array);
                !taints.is_some_and(|ts| ts.iter().any(|t| t["key"] == UNINITIALIZED))
            })
            .count();
        let ready = items
            .iter()
            .filter(|n| {
                let conditions = n.pointer("/status/conditions").and_then(Value::as_array);
                conditions.is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        Ok(NodeCount { total: items.len(), initialized, ready })
    }

    /// Waits until exactly `count` Nodes exist, all initialized, noting when the
    /// first one came or went (the count differs from `from`) and when exactly
    /// `count` were Ready; times count from `started` (just before the scale call,
    /// which may wait for its operation).
    pub async fn wait_nodes(
        &self,
        from: usize,
        count: usize,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Follow> {
        let at = || Some((started.elapsed().as_secs_f64() * 100.0).round() / 100.0);
        let mut follow = Follow::default();
        let mut last = None;
        while started.elapsed() < timeout {
            match self.nodes().await {
                Ok(n) => {
                    if follow.first_change_s.is_none() && n.total != from {
                        follow.first_change_s = at();
                    }
                    if follow.ready_s.is_none() && n.ready == count && n.total >= count {
                        follow.ready_s = at();
                    }
                    if n.total == count && n.initialized == count {
                        follow.done_s = at().unwrap_or_default();
                        return Ok(follow);
                    }
                    last = Some(n);
                }
                Err(e) => eprintln!("listing Nodes: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{count} initialized Nodes not reached within {timeout:?}; last seen: {last:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_ip_is_read_from_status() {
        let svc = json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.1.0.3", "ipMode": "VIP"}]}}});
        assert_eq!(ingress_ip(&svc).as_deref(), Some("127.1.0.3"));
        assert_eq!(ingress_ip(&json!({"status": {"loadBalancer": {}}})), None);
        assert_eq!(service_name(7), "bench-lb-0007");
    }
}
