//! Watch streams: events from an object cache, filtered by selectors,
//! rendered as JSON, Table or metadata, with bookmarks and a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::cache::{Event, EventType, ObjectCache, rv_of};
use super::resource::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{Format, partial_metadata, table};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Synthetic ADDED events for the current state, then changes (no or "0" resourceVersion).
    Now,
    /// Changes strictly after this resourceVersion.
    After(u64),
}

/// Which objects a watch or list sees.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether `obj` passes.
    pub fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str().unwrap_or("") != ns
        {
            return false;
        }
        self.labels.matches_json(meta.get("labels"))
            && self.fields.matches(|field| {
                let pointer = format!("/{}", field.replace('.', "/"));
                match obj.pointer(&pointer) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                }
            })
    }
}

/// Settings of one watch.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Where it starts.
    pub start: Start,
    /// What it sees.
    pub filter: Filter,
    /// Whether BOOKMARK events are wanted.
    pub bookmarks: bool,
    /// When the stream ends.
    pub timeout: Duration,
    /// How often bookmarks are sent.
    pub bookmark_interval: Duration,
    /// How objects are rendered.
    pub format: Format,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("events serialise");
    out.push(b'\n');
    Bytes::from(out)
}

/// Renders objects of one watch; tracks whether table headers were sent.
struct Renderer {
    def: Arc<ResourceDef>,
    format: Format,
    headers_sent: bool,
}

impl Renderer {
    fn object(&mut self, obj: &Value) -> Value {
        match self.format {
            Format::Json => obj.clone(),
            Format::Metadata => partial_metadata(obj),
            Format::Table(include) => {
                let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_owned();
                let t = table(&self.def, &[obj], &rv, include, !self.headers_sent);
                self.headers_sent = true;
                t
            }
        }
    }

    fn bookmark(&self, rv: u64) -> Value {
        match self.format {
            Format::Table(_) => {
                json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": [], "rows": []})
            }
            Format::Metadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}})
            }
            Format::Json => {
                json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": {"resourceVersion": rv.to_string()}})
            }
        }
    }
}

/// The event a watcher with `filter` sees for `event`, if any: an object
/// moving into the selection is ADDED, one moving out is DELETED.
fn visible(event: &Event, filter: &Filter) -> Option<EventType> {
    let now = filter.matches(&event.object);
    let before = event.previous.as_deref().is_some_and(|p| filter.matches(p));
    match (event.kind, before, now) {
        (EventType::Added, _, true) => Some(EventType::Added),
        (EventType::Modified, true, true) => Some(EventType::Modified),
        (EventType::Modified, false, true) => Some(EventType::Added),
        (EventType::Modified, true, false) => Some(EventType::Deleted),
        (EventType::Deleted, true, _) => Some(EventType::Deleted),
        _ => None,
    }
}

/// An `ERROR` event carrying a 410 Expired status, after which clients relist.
pub fn expired_event(message: &str) -> Bytes {
    line("ERROR", ApiError::expired(message).to_status())
}

/// Starts a watch; returns the stream of encoded event lines. A resourceVersion
/// that cannot be served yields a single `ERROR` (410) event, as kube-apiserver does.
pub fn start(cache: Arc<ObjectCache>, def: Arc<ResourceDef>, params: WatchParams) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    let mut renderer = Renderer { def, format: params.format, headers_sent: false };
    let (initial, backlog, start_rv, mut events): (Vec<Arc<Value>>, Vec<Arc<Event>>, u64, _) = match params.start {
        Start::Now => {
            let (objects, rv, events) = cache.subscribe_now();
            (objects, Vec::new(), rv, events)
        }
        Start::After(rv) => match cache.subscribe_after(rv) {
            Ok((backlog, events)) => (Vec::new(), backlog, rv, events),
            Err(expired) => {
                let _ = tx.try_send(expired_event(&expired.0));
                return rx;
            }
        },
    };
    tokio::spawn(async move {
        let mut last_rv = start_rv;
        let deadline = tokio::time::Instant::now() + params.timeout;
        for obj in initial.iter().filter(|o| params.filter.matches(o)) {
            last_rv = last_rv.max(rv_of(obj));
            if tx.send(line("ADDED", renderer.object(obj))).await.is_err() {
                return;
            }
        }
        for event in &backlog {
            last_rv = event.rv;
            if let Some(kind) = visible(event, &params.filter)
                && tx.send(line(kind.as_str(), renderer.object(&event.object))).await.is_err()
            {
                return;
            }
        }
        let mut bookmarks =
            tokio::time::interval_at(tokio::time::Instant::now() + params.bookmark_interval, params.bookmark_interval);
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) => {
                        if event.rv <= last_rv {
                            continue;
                        }
                        last_rv = event.rv;
                        if let Some(kind) = visible(&event, &params.filter)
                            && tx.send(line(kind.as_str(), renderer.object(&event.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Never skip silently: the client relists.
                        let _ = tx.send(expired_event(&format!("watch fell {n} events behind; too old resource version: {last_rv}"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmarks.tick(), if params.bookmarks => {
                    if let Some(rv) = cache.bookmark_rv(&events)
                        && rv > last_rv
                    {
                        last_rv = rv;
                        if tx.send(line("BOOKMARK", renderer.bookmark(rv))).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if params.bookmarks && let Some(rv) = cache.bookmark_rv(&events) && rv > last_rv {
                        let _ = tx.send(line("BOOKMARK", renderer.bookmark(rv))).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    rx
}
