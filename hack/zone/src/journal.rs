//! The orchestrator API calls the zone answered (`GET /admin/requests`), so a
//! test can tell who asked for what: which instances were evicted by how many
//! calls, which sizes a nodepool was scaled to. Only calls that named an
//! operation of the spec are kept (`/admin` calls and unknown paths are not),
//! with what the answer was, injected faults included. In memory, the most
//! recent [`KEEP`], in the order they were answered, which for the calls the
//! handlers answer is the order their changes were committed in (so replaying
//! the journal's evictions and scales gives a pool's exact sizes); not kept
//! across restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::app::ApiResult;
use crate::http::Call;

/// How many calls are kept (the oldest go first).
pub const KEEP: usize = 10_000;

/// One answered call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Entry {
    /// Its place among every call answered since start (from 1), so gaps show dropped ones.
    pub seq: u64,
    /// When it was answered (RFC 3339).
    pub at: String,
    /// The zone it was for.
    pub zone: String,
    /// The spec's operation id.
    pub operation: String,
    /// Path parameters by name.
    pub params: BTreeMap<String, String>,
    /// The JSON body sent, if any.
    pub body: Option<Value>,
    /// The HTTP status answered; `None`: the connection was closed without one (an injected reset).
    pub status: Option<u16>,
    /// Whether fault injection chose the answer (the call may or may not have been carried out).
    pub injected: bool,
}

/// The journal.
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<(u64, VecDeque<Entry>)>,
    /// Held while a handler answers and its call is recorded, so the journal's
    /// order is the handlers' (which the state's lock serializes anyway).
    answering: Mutex<()>,
}

impl Journal {
    /// Answers `call` with `handler` and records the answer, in the order of the handlers' answers.
    pub fn answer(&self, call: &Call, handler: impl FnOnce() -> ApiResult<Value>) -> ApiResult<Value> {
        let _in_order = self.answering.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = handler();
        let status = result.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200);
        self.record(call, Some(status), false);
        result
    }

    /// Records that `call` was answered `status`.
    pub fn record(&self, call: &Call, status: Option<u16>, injected: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.0 += 1;
        let entry = Entry {
            seq: inner.0,
            at: jiff::Timestamp::now().to_string(),
            zone: call.zone.clone(),
            operation: call.operation.clone(),
            params: call.params.iter().cloned().collect(),
            body: call.body.clone(),
            status,
            injected,
        };
        if inner.1.len() == KEEP {
            inner.1.pop_front();
        }
        inner.1.push_back(entry);
    }

    /// The calls kept, oldest first; only those of `operations` when given.
    pub fn list(&self, operations: Option<&[&str]>) -> Vec<Entry> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.1.iter().filter(|e| operations.is_none_or(|ops| ops.contains(&e.operation.as_str()))).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(operation: &str) -> Call {
        Call {
            zone: "ch-gva-2".into(),
            operation: operation.into(),
            params: vec![("id".into(), "x".into())],
            query: Vec::new(),
            body: Some(serde_json::json!({"size": 3})),
        }
    }

    #[test]
    fn an_answer_is_recorded_with_its_status() {
        let journal = Journal::default();
        let ok = journal.answer(&call("scale-sks-nodepool"), || Ok(serde_json::json!({})));
        assert!(ok.is_ok());
        let refused = journal.answer(&call("evict-sks-nodepool-members"), || {
            Err(crate::app::ApiError::bad_request("instances: x is not a member"))
        });
        assert!(refused.is_err());
        let seen: Vec<(String, Option<u16>, bool)> =
            journal.list(None).into_iter().map(|e| (e.operation, e.status, e.injected)).collect();
        assert_eq!(
            seen,
            [("scale-sks-nodepool".into(), Some(200), false), ("evict-sks-nodepool-members".into(), Some(400), false)]
        );
    }

    #[test]
    fn keeps_the_most_recent_calls_in_order_and_filters_by_operation() {
        let journal = Journal::default();
        for i in 0..KEEP + 2 {
            let op = if i % 2 == 0 { "scale-sks-nodepool" } else { "get-instance" };
            journal.record(&call(op), Some(200), false);
        }
        let all = journal.list(None);
        assert_eq!(all.len(), KEEP);
        assert_eq!((all[0].seq, all[KEEP - 1].seq), (3, KEEP as u64 + 2), "the two oldest went");
        let scales = journal.list(Some(&["scale-sks-nodepool"]));
        assert_eq!(scales.len(), KEEP / 2);
        assert!(scales.iter().all(|e| e.operation == "scale-sks-nodepool" && e.params["id"] == "x"));
        let json = serde_json::to_value(&scales[0]).unwrap();
        assert_eq!(json["body"]["size"], 3);
        assert_eq!((json["status"].as_u64(), json["injected"].as_bool()), (Some(200), Some(false)));
    }
}
