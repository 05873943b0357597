//! Watch streams: events from an object cache, filtered by selectors,
//! rendered as JSON, Table or metadata, with bookmarks and a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::cache::{Event, EventType, ObjectCache, rv_of};
use super::entry::Entry;
use super::resource::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{Format, table};

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
    /// Whether every object passes (no namespace, no selectors).
    pub fn selects_all(&self) -> bool {
        self.namespace.is_none() && self.labels.is_empty() && self.fields.is_empty()
    }

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

/// An event line around an encoded object: `{"object":...,"type":"..."}` and a newline.
fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + kind.len() + 24);
    out.extend_from_slice(b"{\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b",\"type\":");
    serde_json::to_writer(&mut out, kind).expect("strings serialise");
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn value_line(kind: &str, object: &Value) -> Bytes {
    line(kind, &serde_json::to_vec(object).expect("events serialise"))
}

/// Renders objects of one watch; tracks whether table headers were sent.
struct Renderer {
    def: Arc<ResourceDef>,
    format: Format,
    headers_sent: bool,
}

impl Renderer {
    /// The event line of `entry`; JSON and metadata encodings are made once per
    /// object version and shared by every watcher.
    fn line(&mut self, kind: &str, entry: &Entry) -> Bytes {
        match self.format {
            Format::Json => line(kind, entry.json()),
            Format::Metadata => line(kind, entry.metadata_json()),
            Format::Table(include) => {
                let rv = entry.object["metadata"]["resourceVersion"].as_str().unwrap_or("");
                let t = table(&self.def, &[entry], rv, include, !self.headers_sent);
                self.headers_sent = true;
                line(kind, &t)
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
    value_line("ERROR", &ApiError::expired(message).to_status())
}

/// Starts a watch; returns the stream of encoded event lines. A resourceVersion
/// that cannot be served yields a single `ERROR` (410) event, as kube-apiserver does.
pub fn start(cache: Arc<ObjectCache>, def: Arc<ResourceDef>, params: WatchParams) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    let mut renderer = Renderer { def, format: params.format, headers_sent: false };
    let (initial, backlog, start_rv, mut events): (Arc<[Entry]>, Vec<Arc<Event>>, u64, _) = match params.start {
        Start::Now => {
            let (objects, rv, events) = cache.subscribe_now();
            (objects, Vec::new(), rv, events)
        }
        Start::After(rv) => match cache.subscribe_after(rv) {
            Ok((backlog, events)) => (Arc::new([]), backlog, rv, events),
            Err(expired) => {
                let _ = tx.try_send(expired_event(&expired.0));
                return rx;
            }
        },
    };
    tokio::spawn(async move {
        let mut last_rv = start_rv;
        let deadline = tokio::time::Instant::now() + params.timeout;
        for entry in initial.iter().filter(|e| params.filter.matches(&e.object)) {
            last_rv = last_rv.max(rv_of(&entry.object));
            if tx.send(renderer.line("ADDED", entry)).await.is_err() {
                return;
            }
        }
        for event in &backlog {
            last_rv = event.rv;
            if let Some(kind) = visible(event, &params.filter)
                && tx.send(renderer.line(kind.as_str(), &event.entry())).await.is_err()
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
                            && tx.send(renderer.line(kind.as_str(), &event.entry())).await.is_err()
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
                        if tx.send(value_line("BOOKMARK", &renderer.bookmark(rv))).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if params.bookmarks && let Some(rv) = cache.bookmark_rv(&events) && rv > last_rv {
                        let _ = tx.send(value_line("BOOKMARK", &renderer.bookmark(rv))).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    rx
}
