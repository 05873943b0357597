//! Watches of Nodes and CSRs, as the admin, recording when each node was seen
//! registered, initialized (providerID set, uninitialized taint gone) and when
//! its kubelet-serving CSR appeared and was approved, denied and issued.
//! Arrival times are taken when a chunk arrives, before parsing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::Deserialize;

use super::kubelet::{SERVING_SIGNER, UNINITIALIZED};

/// Longest a watch stays open (asked of the server; it is reopened after).
const WATCH_TIMEOUT_S: u64 = 3600;

/// What the watches saw of one node.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Node ADDED.
    pub node_added: Option<Instant>,
    /// Node initialized.
    pub node_init: Option<Instant>,
    /// Its serving CSR ADDED.
    pub csr_added: Option<Instant>,
    /// Its serving CSR approved.
    pub csr_approved: Option<Instant>,
    /// Its serving CSR denied or failed.
    pub csr_denied: Option<Instant>,
    /// Its serving certificate issued.
    pub csr_issued: Option<Instant>,
}

impl Seen {
    /// When both the Node is initialized and its CSR approved.
    pub fn done(&self) -> Option<Instant> {
        Some(self.node_init?.max(self.csr_approved?))
    }
}

/// Everything seen, by node name.
#[derive(Default)]
pub struct Board {
    seen: Mutex<HashMap<String, Seen>>,
    /// Denial messages, a few.
    denials: Mutex<Vec<String>>,
    events: Mutex<u64>,
}

impl Board {
    fn update(&self, name: &str, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(seen.entry(name.to_owned()).or_default());
    }

    /// A copy of what was seen of `names`.
    pub fn of(&self, names: &[String]) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        names.iter().map(|n| seen.get(n).copied().unwrap_or_default()).collect()
    }

    /// A few denial messages.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Watch events received.
    pub fn events(&self) -> u64 {
        *self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: Object,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object {
    metadata: Meta,
    spec: Spec,
    status: Status,
    message: Option<String>,
    code: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    name: String,
    resource_version: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    #[serde(rename = "providerID")]
    provider_id: Option<String>,
    taints: Vec<Taint>,
    username: Option<String>,
    signer_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Taint {
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    conditions: Vec<Condition>,
    certificate: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    message: Option<String>,
}

/// Which kind a watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/v1/nodes`.
    Nodes,
    /// `/apis/certificates.k8s.io/v1/certificatesigningrequests`.
    Csrs,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Nodes => "/api/v1/nodes",
            Kind::Csrs => "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        }
    }
}

fn record(board: &Board, kind: Kind, event: &Event, at: Instant) {
    let o = &event.object;
    match kind {
        Kind::Nodes => {
            let initialized = o.spec.provider_id.as_deref().is_some_and(|p| !p.is_empty())
                && !o.spec.taints.iter().any(|t| t.key == UNINITIALIZED);
            board.update(&o.metadata.name, |s| {
                if event.kind == "ADDED" {
                    s.node_added.get_or_insert(at);
                }
                if initialized {
                    s.node_init.get_or_insert(at);
                }
            });
        }
        Kind::Csrs => {
            if o.spec.signer_name.as_deref() != Some(SERVING_SIGNER) {
                return;
            }
            let Some(node) = o.spec.username.as_deref().and_then(|u| u.strip_prefix("system:node:")) else { return };
            let has = |t: &str| o.status.conditions.iter().any(|c| c.type_ == t && c.status != "False");
            let denied = has("Denied") || has("Failed");
            if denied {
                let mut d = board.denials.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if d.len() < 5 {
                    let why = o.status.conditions.iter().filter_map(|c| c.message.clone()).collect::<Vec<_>>();
                    d.push(format!("{}: {}", o.metadata.name, why.join("; ")));
                }
            }
            board.update(node, |s| {
                s.csr_added.get_or_insert(at);
                if has("Approved") {
                    s.csr_approved.get_or_insert(at);
                }
                if denied {
                    s.csr_denied.get_or_insert(at);
                }
                if o.status.certificate.as_deref().is_some_and(|c| !c.is_empty()) {
                    s.csr_issued.get_or_insert(at);
                }
            });
        }
    }
}

/// The resourceVersion of a LIST of `kind` (one item, so it stays cheap).
async fn list_rv(client: &reqwest::Client, url: &str, kind: Kind) -> anyhow::Result<String> {
    let resp = client.get(format!("{url}{}?limit=1", kind.path())).send().await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("LIST {} answered {status}: {body}", kind.path());
    }
    body["metadata"]["resourceVersion"].as_str().map(str::to_owned).context("LIST resourceVersion")
}

/// Follows `kind` from now until `stop`, recording into `board`; reopens the
/// watch from the last resourceVersion when the server ends it.
pub async fn follow(
    client: reqwest::Client,
    url: String,
    kind: Kind,
    board: Arc<Board>,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut rv = list_rv(&client, &url, kind).await?;
    let mut ready = Some(ready);
    loop {
        let path = format!("{}?watch=1&resourceVersion={rv}&timeoutSeconds={WATCH_TIMEOUT_S}", kind.path());
        let resp = client.get(format!("{url}{path}")).send().await?;
        if !resp.status().is_success() {
            bail!("watch {} answered {}", kind.path(), resp.status());
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = stop.changed() => return Ok(()),
            };
            let at = Instant::now();
            let data = match chunk {
                Some(Ok(d)) => d,
                Some(Err(e)) => bail!("watch {} failed: {e}", kind.path()),
                None => break,
            };
            buf.extend_from_slice(&data);
            let mut start = 0;
            while let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
                let line = &buf[start..start + end];
                start += end + 1;
                let event: Event = serde_json::from_slice(line).context("undecodable watch event")?;
                *board.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                if event.kind == "ERROR" {
                    bail!(
                        "watch {} ERROR {:?}: {}",
                        kind.path(),
                        event.object.code,
                        event.object.message.unwrap_or_default()
                    );
                }
                if !event.object.metadata.resource_version.is_empty() {
                    rv = event.object.metadata.resource_version.clone();
                }
                if event.kind != "BOOKMARK" {
                    record(&board, kind, &event, at);
                }
            }
            buf.drain(..start);
        }
        // The server ended the watch: reopen it where it stopped.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
