//! Requests to the Kubernetes API over a window, per object. What a binary
//! sent comes from its own client's `kube_client_requests_total` (this
//! carries over to a real kube-apiserver, whose counters do not say who
//! asked); what the API served comes from its `apiserver_request_total`
//! (kube-standin's, or kube-apiserver's with `KUBE_ASSETS`), to cross-check.
//! On a real cluster the API server is the bottleneck and the stand-in's
//! wall-clock is about 10x faster, so these counts are the figures that
//! carry over.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::report::Table;

/// What the output says about client-side throttling: kube-rs has no
/// client-side rate limiter (client-go's default is 5 QPS, 20 in the
/// cloud-provider framework), so no request of ours ever waits on one.
pub const THROTTLING: &str = "0 s: kube-rs has no client-side rate limiter (no QPS/burst); kube-apiserver's \
                              priority and fairness is the only limit (its 429s are retried inside kube-rs)";

/// One kind of request, as kube-apiserver's authorizer names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …
    pub verb: String,
    /// e.g. `nodes`.
    pub resource: String,
    /// e.g. `status`; empty for the object itself.
    pub subresource: String,
}

impl Request {
    /// `patch nodes/status`.
    pub fn label(&self) -> String {
        if self.subresource.is_empty() {
            format!("{} {}", self.verb, self.resource)
        } else {
            format!("{} {}/{}", self.verb, self.resource, self.subresource)
        }
    }

    fn is_event(&self) -> bool {
        self.resource == "events"
    }

    /// Leader election's Lease: a cost per replica and second, not per object.
    fn is_lease(&self) -> bool {
        self.resource == "leases"
    }

    /// A request about the objects a window counts (not an event, not the Lease).
    fn is_object(&self) -> bool {
        !self.is_event() && !self.is_lease()
    }

    fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }
}

/// Request counts by kind and answer (HTTP status, or `error`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(BTreeMap<(Request, String), u64>);

/// The labels and value of each sample of `metric` in a Prometheus text exposition.
fn samples<'a>(text: &'a str, metric: &'a str) -> impl Iterator<Item = (BTreeMap<&'a str, &'a str>, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.rsplit_once('}')?;
        let value = value.trim().parse::<f64>().ok()?;
        let labels = labels
            .split("\",")
            .filter_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                Some((k.trim_matches(','), v.trim_end_matches('"')))
            })
            .collect();
        Some((labels, value))
    })
}

/// kube-apiserver's `verb` label (`POST`, `PUT`, `LIST`, …) as the authorizer's verb.
fn authorizer_verb(metric_verb: &str) -> String {
    match metric_verb {
        "POST" => "create".to_owned(),
        "PUT" => "update".to_owned(),
        "APPLY" => "patch".to_owned(),
        other => other.to_lowercase(),
    }
}

impl Counts {
    /// What a binary sent: its `kube_client_requests_total`.
    pub fn sent(metrics: &str) -> Counts {
        Counts::parse(metrics, "kube_client_requests_total", str::to_owned)
    }

    /// What the API served: its `apiserver_request_total` (verbs as the authorizer's).
    pub fn served(metrics: &str) -> Counts {
        Counts::parse(metrics, "apiserver_request_total", authorizer_verb)
    }

    fn parse(metrics: &str, metric: &str, verb: fn(&str) -> String) -> Counts {
        let mut out = BTreeMap::new();
        for (labels, value) in samples(metrics, metric) {
            let label = |k: &str| labels.get(k).copied().unwrap_or_default().to_owned();
            let request =
                Request { verb: verb(&label("verb")), resource: label("resource"), subresource: label("subresource") };
            *out.entry((request, label("code"))).or_insert(0) += value as u64;
        }
        Counts(out)
    }

    /// The requests made after `before` was read.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .map(|(k, n)| (k.clone(), n.saturating_sub(before.0.get(k).copied().unwrap_or(0))))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }

    /// These requests and `other`'s together.
    pub fn plus(&self, other: &Counts) -> Counts {
        let mut out = self.0.clone();
        for (k, n) in &other.0 {
            *out.entry(k.clone()).or_insert(0) += n;
        }
        Counts(out)
    }

    /// How many requests match `f` (by kind and answer).
    pub fn count(&self, f: impl Fn(&Request, &str) -> bool) -> u64 {
        self.0.iter().filter(|((r, code), _)| f(r, code)).map(|(_, n)| n).sum()
    }

    /// Totals by kind, over every answer.
    pub fn by_request(&self) -> BTreeMap<Request, u64> {
        let mut out = BTreeMap::new();
        for ((r, _), n) in &self.0 {
            *out.entry(r.clone()).or_insert(0) += n;
        }
        out
    }

    /// The summary of these requests.
    pub fn summary(&self) -> Summary {
        let ok = |code: &str| code.starts_with('2');
        Summary {
            total: self.count(|_, _| true),
            writes: self.count(|r, _| r.is_write() && r.is_object()),
            conflicts: self.count(|r, code| r.is_write() && code == "409"),
            not_applicable: self.count(|r, code| r.is_write() && code == "422"),
            other_failures: self.count(|_, code| !ok(code) && code != "409" && code != "422"),
            gets: self.count(|r, _| r.verb == "get" && r.is_object()),
            lists: self.count(|r, _| r.verb == "list" && r.is_object()),
            watches: self.count(|r, _| r.verb == "watch"),
            events: self.count(|r, _| r.is_write() && r.is_event()),
            leases: self.count(|r, _| r.is_lease()),
        }
    }

    /// The counts as JSON: `{"patch nodes/status": {"200": 1000}}`.
    pub fn to_json(&self) -> Value {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((r, code), n) in &self.0 {
            out.entry(r.label()).or_default().insert(code.clone(), *n);
        }
        json!(out)
    }
}

/// The figures of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Every request.
    pub total: u64,
    /// Creates, updates, patches and deletes, events and the Lease apart (conflicts included).
    pub writes: u64,
    /// Writes answered 409 Conflict (a stale resourceVersion).
    pub conflicts: u64,
    /// Writes answered 422 (a JSON patch `test` that no longer held, or invalid).
    pub not_applicable: u64,
    /// Other answers that are not 2xx (404s included), and requests without an answer.
    pub other_failures: u64,
    /// GETs of one object (the Lease apart).
    pub gets: u64,
    /// LISTs (the Lease apart).
    pub lists: u64,
    /// Watches opened.
    pub watches: u64,
    /// Event creates and series patches.
    pub events: u64,
    /// Leader election's reads and writes of its Lease.
    pub leases: u64,
}

/// One window of a scenario: what a binary sent, and per how many objects.
#[derive(Debug, Clone)]
pub struct Window {
    /// e.g. `burst`.
    pub name: String,
    /// What the binary sent.
    pub sent: Counts,
    /// The objects the window is about, and what one is called (e.g. `Node+CSR`).
    pub per: Option<(usize, String)>,
    /// What the API served meanwhile, when it was read.
    pub served: Option<Counts>,
    /// Requests the bench itself made meanwhile (by kind), for the cross-check.
    pub bench_writes: BTreeMap<Request, u64>,
    /// The resources cross-checked (all when empty): others (the zone's
    /// kubelets) may write the rest meanwhile.
    pub checked: Vec<&'static str>,
}

impl Window {
    /// Requests per object, two decimals (`-` without objects).
    fn per_object(&self, n: u64) -> String {
        match &self.per {
            Some((objects, _)) if *objects > 0 => format!("{:.2}", n as f64 / *objects as f64),
            _ => "-".to_owned(),
        }
    }

    /// Writes served by the API minus the bench's own, per kind, against what
    /// the binary says it sent: equal when the binary is the only other writer.
    pub fn cross_check(&self) -> Option<Vec<(Request, u64, u64, bool)>> {
        let served = self.served.as_ref()?.by_request();
        let sent = self.sent.by_request();
        let checked = |r: &Request| self.checked.is_empty() || self.checked.contains(&r.resource.as_str());
        let mut kinds: Vec<&Request> =
            served.keys().chain(sent.keys()).filter(|r| r.is_write() && checked(r)).collect();
        kinds.sort();
        kinds.dedup();
        Some(
            kinds
                .into_iter()
                .map(|r| {
                    let others = served.get(r).copied().unwrap_or(0);
                    let bench = self.bench_writes.get(r).copied().unwrap_or(0);
                    let ours = sent.get(r).copied().unwrap_or(0);
                    (r.clone(), others.saturating_sub(bench), ours, others.saturating_sub(bench) == ours)
                })
                .collect(),
        )
    }

    /// The window as JSON.
    pub fn to_json(&self) -> Value {
        let s = self.sent.summary();
        let per = |n: u64| match &self.per {
            Some((objects, _)) if *objects > 0 => json!((n as f64 / *objects as f64 * 100.0).round() / 100.0),
            _ => Value::Null,
        };
        json!({
            "objects": self.per.as_ref().map(|(n, _)| *n),
            "object": self.per.as_ref().map(|(_, what)| what.clone()),
            "sent": self.sent.to_json(),
            "summary": s,
            "per_object": {
                "writes": per(s.writes), "conflicts": per(s.conflicts), "not_applicable": per(s.not_applicable),
                "gets": per(s.gets), "lists": per(s.lists), "watches": per(s.watches), "events": per(s.events),
                "leases": per(s.leases),
                "total": per(s.total),
            },
            "client_throttling_delay_s": 0,
            "served": self.served.as_ref().map(Counts::to_json),
            "cross_check": self.cross_check().map(|rows| rows.iter().map(|(r, served, sent, ok)| json!({
                "request": r.label(), "served_minus_bench": served, "sent": sent, "match": ok,
            })).collect::<Vec<_>>()),
        })
    }
}

/// The per-object table of `windows`, for requests `who` sent.
pub fn table(who: &str, windows: &[Window]) -> Table {
    let mut headers = vec!["request".to_owned()];
    for w in windows {
        headers.push(format!("{}: total", w.name));
        if let Some((n, what)) = &w.per {
            headers.push(format!("per {what} ({n})"));
        }
    }
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t =
        Table::new(&format!("Kubernetes API requests sent by {who} (its kube_client_requests_total)"), &header_refs);
    let mut kinds: Vec<Request> = windows.iter().flat_map(|w| w.sent.by_request().into_keys()).collect();
    kinds.sort();
    kinds.dedup();
    let by_request: Vec<BTreeMap<Request, u64>> = windows.iter().map(|w| w.sent.by_request()).collect();
    let summaries: Vec<Summary> = windows.iter().map(|w| w.sent.summary()).collect();
    // Each row: its label and its count in each window.
    let mut rows: Vec<(String, Vec<u64>)> = kinds
        .iter()
        .map(|r| (r.label(), by_request.iter().map(|b| b.get(r).copied().unwrap_or(0)).collect()))
        .collect();
    let sum = |label: &str, f: fn(&Summary) -> u64| (label.to_owned(), summaries.iter().map(f).collect());
    rows.extend([
        sum("= writes (events and the Lease apart)", |s| s.writes),
        sum("= conflicts (409)", |s| s.conflicts),
        sum("= not applicable (422)", |s| s.not_applicable),
        sum("= other failures", |s| s.other_failures),
        sum("= GETs of one object (the Lease apart)", |s| s.gets),
        sum("= LISTs", |s| s.lists),
        sum("= watches opened", |s| s.watches),
        sum("= events written (create + series patch)", |s| s.events),
        sum("= leader election (Lease get + update)", |s| s.leases),
        sum("= client-side throttling delay, s (kube-rs has no rate limiter)", |_| 0),
    ]);
    for (label, counts) in rows {
        let mut cells = vec![label];
        for (w, n) in windows.iter().zip(counts) {
            cells.push(n.to_string());
            if w.per.is_some() {
                cells.push(w.per_object(n));
            }
        }
        t.row(cells);
    }
    t
}

/// The cross-check of `windows` that read the API's counters.
pub fn cross_check_table(who: &str, windows: &[Window]) -> Option<Table> {
    let mut t = Table::new(
        &format!(
            "Cross-check: writes served by the Kubernetes API (apiserver_request_total) minus the bench's, vs. sent by {who}"
        ),
        &["window", "request", "served - bench", &format!("sent by {who}"), "match"],
    );
    let mut any = false;
    for w in windows {
        for (r, served, sent, ok) in w.cross_check().into_iter().flatten() {
            any = true;
            t.row(vec![
                w.name.clone(),
                r.label(),
                served.to_string(),
                sent.to_string(),
                if ok { "yes" } else { "NO" }.to_owned(),
            ]);
        }
    }
    any.then_some(t)
}

/// The windows as JSON, by name.
pub fn windows_json(windows: &[Window]) -> Value {
    let mut out = serde_json::Map::new();
    for w in windows {
        out.insert(w.name.clone(), w.to_json());
    }
    out.insert("client_throttling".into(), json!(THROTTLING));
    Value::Object(out)
}

/// A request kind, for the bench's own writes.
pub fn request(verb: &str, resource: &str, subresource: &str) -> Request {
    Request { verb: verb.to_owned(), resource: resource.to_owned(), subresource: subresource.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "# HELP kube_client_requests_total x\n\
        kube_client_requests_total{code=\"200\",resource=\"nodes\",subresource=\"status\",verb=\"patch\"} 10\n\
        kube_client_requests_total{code=\"409\",resource=\"nodes\",subresource=\"\",verb=\"patch\"} 2\n\
        kube_client_requests_total{code=\"200\",resource=\"nodes\",subresource=\"\",verb=\"patch\"} 10\n\
        kube_client_requests_total{code=\"201\",resource=\"events\",subresource=\"\",verb=\"create\"} 10\n\
        kube_client_requests_total{code=\"200\",resource=\"nodes\",subresource=\"\",verb=\"watch\"} 1\n\
        kube_client_request_duration_seconds_count{resource=\"nodes\",verb=\"patch\"} 22\n";

    #[test]
    fn counts_are_read_by_kind_and_answer_and_summarized() {
        let c = Counts::sent(CLIENT);
        let s = c.summary();
        assert_eq!((s.total, s.writes, s.conflicts, s.events, s.watches, s.gets), (33, 22, 2, 10, 1, 0));
        assert_eq!(c.by_request()[&request("patch", "nodes", "")], 12);
        let before = Counts::sent(
            "kube_client_requests_total{code=\"200\",resource=\"nodes\",subresource=\"status\",verb=\"patch\"} 4\n",
        );
        assert_eq!(c.since(&before).by_request()[&request("patch", "nodes", "status")], 6);
        assert_eq!(c.to_json()["patch nodes"]["409"], 2);
    }

    #[test]
    fn served_counts_use_the_authorizers_verbs_and_are_cross_checked() {
        let served = Counts::served(
            "apiserver_request_total{code=\"201\",component=\"apiserver\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 10\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1\"} 10\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"PATCH\",version=\"v1\"} 11\n\
             apiserver_request_total{code=\"409\",group=\"\",resource=\"nodes\",scope=\"resource\",subresource=\"\",verb=\"PATCH\",version=\"v1\"} 2\n\
             apiserver_request_total{code=\"201\",group=\"events.k8s.io\",resource=\"events\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 10\n",
        );
        assert_eq!(served.by_request()[&request("create", "nodes", "")], 10);
        let w = Window {
            name: "burst".into(),
            sent: Counts::sent(CLIENT),
            per: Some((10, "Node".into())),
            served: Some(served),
            bench_writes: [(request("create", "nodes", ""), 10)].into(),
            checked: vec![],
        };
        let rows = w.cross_check().unwrap();
        let row = |label: &str| rows.iter().find(|r| r.0.label() == label).cloned().unwrap();
        assert!(row("create nodes").3 && row("patch nodes/status").3 && row("create events").3);
        assert_eq!(row("patch nodes"), (request("patch", "nodes", ""), 13, 12, false), "someone else patched once");
        assert_eq!(w.to_json()["per_object"]["writes"], 2.2);
        let only_events = Window { checked: vec!["events"], ..w.clone() };
        assert_eq!(only_events.cross_check().unwrap().len(), 1);
        let rendered = table("sks-ccm", &[w]).render();
        assert!(rendered.contains("= conflicts (409)"), "{rendered}");
    }
}
