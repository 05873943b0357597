//! sks-apiserver's orchestrator calls as the recording proxy in front of
//! sks-zone saw them arrive: which operation, on which nodepool, asking for
//! which size, and when.

use std::collections::BTreeMap;
use std::time::Instant;

use sks_e2e::proxy::Exchange;
use uuid::Uuid;

/// The operation that sets a nodepool's size.
pub const SCALE: &str = "scale-sks-nodepool";
/// The operation that removes given instances from a nodepool.
pub const EVICT: &str = "evict-sks-nodepool-members";

/// One call.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived at the proxy.
    pub at: Instant,
    /// The spec's operationId, or `METHOD path` when the spec does not have it.
    pub operation: String,
    /// The nodepool in its path, if any.
    pub nodepool: Option<Uuid>,
    /// The `size` it asked for (scale calls).
    pub size: Option<i64>,
    /// The answer's status.
    pub status: u16,
}

impl Call {
    /// Reads an exchange.
    pub fn of(ex: &Exchange) -> Call {
        // `/sks-cluster/{id}/nodepool/{id}:scale`: the id before any `:action`.
        let mut segments = ex.api_path().split('/');
        let nodepool =
            segments.by_ref().find(|s| *s == "nodepool").and_then(|_| segments.next()?.split(':').next()?.parse().ok());
        Call {
            at: ex.received,
            operation: ex.operation().map_or_else(|| format!("{} {}", ex.method, ex.path), str::to_owned),
            nodepool,
            size: ex.request.as_ref().and_then(|b| b["size"].as_i64()),
            status: ex.status,
        }
    }

    /// Whether it is `operation` on `nodepool`.
    pub fn is(&self, operation: &str, nodepool: Uuid) -> bool {
        self.operation == operation && self.nodepool == Some(nodepool)
    }
}

/// The calls among `calls` that arrived in `[from, to)`.
pub fn between(calls: &[Call], from: Instant, to: Option<Instant>) -> Vec<Call> {
    calls.iter().filter(|c| c.at >= from && to.is_none_or(|t| c.at < t)).cloned().collect()
}

/// Calls by operation.
pub fn by_operation(calls: &[Call]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in calls {
        *out.entry(c.operation.clone()).or_insert(0) += 1;
    }
    out
}

/// Scale calls this close belong to one decision: a round asks its pools one
/// after the other, and rounds are at least the 100 ms batching apart.
const SAME_DECISION: std::time::Duration = std::time::Duration::from_millis(50);

/// The scale calls among `calls` grouped by decision, in order.
pub fn decisions(calls: &[Call]) -> Vec<Vec<Call>> {
    let mut scales: Vec<&Call> = calls.iter().filter(|c| c.operation == SCALE).collect();
    scales.sort_by_key(|c| c.at);
    let mut out: Vec<Vec<Call>> = Vec::new();
    for c in scales {
        match out.last_mut() {
            Some(d) if d.last().is_some_and(|l| c.at.saturating_duration_since(l.at) < SAME_DECISION) => {
                d.push(c.clone());
            }
            _ => out.push(vec![c.clone()]),
        }
    }
    out
}

/// The most scale calls one decision among `calls` made to one nodepool.
pub fn most_per_pool(calls: &[Call]) -> usize {
    decisions(calls)
        .iter()
        .map(|d| {
            let mut per: BTreeMap<Option<Uuid>, usize> = BTreeMap::new();
            for c in d {
                *per.entry(c.nodepool).or_insert(0) += 1;
            }
            per.into_values().max().unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The size the latest successful scale call of `nodepool` asked for, if any.
pub fn last_size(calls: &[Call], nodepool: Uuid) -> Option<i64> {
    calls.iter().filter(|c| c.is(SCALE, nodepool) && c.status < 300 && c.size.is_some()).max_by_key(|c| c.at)?.size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(method: &str, path: &str, body: Option<serde_json::Value>) -> Exchange {
        Exchange {
            method: method.into(),
            path: path.into(),
            query: vec![],
            request: body,
            status: 200,
            response: serde_json::Value::Null,
            received: Instant::now(),
        }
    }

    #[test]
    fn scale_calls_are_read_with_their_nodepool_and_size() {
        let (c, n) = (Uuid::new_v4(), Uuid::new_v4());
        let scale = Call::of(&exchange(
            "PUT",
            &format!("/ch-gva-2/v2/sks-cluster/{c}/nodepool/{n}:scale"),
            Some(serde_json::json!({"size": 12})),
        ));
        assert_eq!(scale.operation, SCALE);
        assert_eq!((scale.nodepool, scale.size), (Some(n), Some(12)));
        assert!(scale.is(SCALE, n));
        let evict = Call::of(&exchange("PUT", &format!("/v2/sks-cluster/{c}/nodepool/{n}:evict"), None));
        assert!(evict.is(EVICT, n));
        let other = Call::of(&exchange("GET", &format!("/v2/sks-cluster/{c}"), None));
        assert_eq!((other.operation.as_str(), other.nodepool), ("get-sks-cluster", None));
        let later = |c: &Call, ms: u64| Call { at: scale.at + std::time::Duration::from_millis(ms), ..c.clone() };
        let calls = [scale.clone(), later(&evict, 1), later(&other, 2), Call { size: Some(14), ..later(&scale, 3) }];
        assert_eq!(last_size(&calls, n), Some(14));
        assert_eq!(by_operation(&calls)[SCALE], 2);
        assert_eq!(between(&calls, calls[3].at, None).len(), 1);
        let other_pool = Call { nodepool: Some(Uuid::new_v4()), ..calls[0].clone() };
        let spread = [calls[0].clone(), later(&other_pool, 2), later(&calls[0], 300), later(&calls[0], 320)];
        let d = decisions(&spread);
        assert_eq!(d.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        assert_eq!(most_per_pool(&spread), 2, "two calls to one pool 20 ms apart");
        assert_eq!(most_per_pool(&spread[..3]), 1);
    }
}
