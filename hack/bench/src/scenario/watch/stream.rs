//! One watch stream on the client side: opening watches on an HTTP/2
//! connection, and reading events until every expected change arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::client::H2;

/// How long opening one watch may take before its connection is deemed full.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watchers share with the driver.
pub struct Shared {
    /// The nodepool that changes.
    pub name: String,
    /// `spec.replicas` after each change.
    pub values: Vec<i64>,
    /// How many watchers have seen each change.
    pub seen: Vec<AtomicUsize>,
}

/// One watcher's record.
#[derive(Debug, Default)]
pub struct Log {
    /// When each change arrived.
    pub arrivals: Vec<Option<Instant>>,
    /// Events received.
    pub events: u64,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: EventObject,
}

#[derive(Deserialize, Default)]
struct EventObject {
    #[serde(default)]
    metadata: EventMeta,
    #[serde(default)]
    spec: EventSpec,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct EventMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct EventSpec {
    replicas: Option<i64>,
}

/// Reads one watch stream until every change was seen, it fails, or `stop` fires.
pub async fn watcher(body: Incoming, shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) -> Log {
    let mut log = Log { arrivals: vec![None; shared.values.len()], ..Default::default() };
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut next = 0;
    while next < shared.values.len() {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => return log,
        };
        // The arrival time is taken before any parsing, so parsing is not counted as delay.
        let at = Instant::now();
        let data: Bytes = match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                log.error = Some(format!("stream failed: {e}"));
                return log;
            }
            None => {
                log.error = Some("stream ended".to_owned());
                return log;
            }
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            log.events += 1;
            let event: WatchEvent = match serde_json::from_slice(&line) {
                Ok(e) => e,
                Err(e) => {
                    log.error = Some(format!("undecodable event: {e}"));
                    return log;
                }
            };
            if event.kind == "ERROR" {
                log.error = Some(format!("ERROR event: {}", event.object.message.unwrap_or_default()));
                return log;
            }
            if event.kind == "MODIFIED"
                && next < shared.values.len()
                && event.object.metadata.name == shared.name
                && event.object.spec.replicas == Some(shared.values[next])
            {
                log.arrivals[next] = Some(at);
                shared.seen[next].fetch_add(1, Ordering::SeqCst);
                next += 1;
            }
        }
    }
    log
}

/// The watches opened on one connection, and why it stopped opening more, if it did.
pub struct Opened {
    /// The response bodies (event streams).
    pub bodies: Vec<Incoming>,
    /// Why opening stopped early.
    pub failure: Option<String>,
}

pub async fn open_on(mut conn: H2, path: String, count: usize) -> Opened {
    let mut bodies = Vec::with_capacity(count);
    for _ in 0..count {
        match tokio::time::timeout(OPEN_TIMEOUT, conn.open(&path)).await {
            Ok(Ok(resp)) if resp.status() == 200 => bodies.push(resp.into_body()),
            Ok(Ok(resp)) => return Opened { bodies, failure: Some(format!("HTTP {}", resp.status())) },
            Ok(Err(e)) => return Opened { bodies, failure: Some(format!("{e:#}")) },
            Err(_) => {
                // hyper's HTTP/2 client queues streams beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS.
                let failure = format!("no response in {OPEN_TIMEOUT:?} (stream limit of the connection?)");
                return Opened { bodies, failure: Some(failure) };
            }
        }
    }
    Opened { bodies, failure: None }
}
