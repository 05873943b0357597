//! Delivery delays computed from the watchers' arrival times.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::stream::Log;
use crate::stats::{Summary, summarize_us};

/// One change and how it was delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `spec.replicas` it set.
    pub replicas: i64,
    /// The PATCH round trip, ms.
    pub patch_ms: f64,
    /// Watches that got it.
    pub delivered: usize,
    /// From the first watch to have it to the last, ms.
    pub spread_ms: f64,
}

/// Delivery delays over every watcher and change.
pub struct Delays {
    /// From sending the PATCH: an upper bound, with the orchestrator write and refresh in it.
    pub from_sent: Summary,
    /// From the first watcher to get the same change: the fan-out alone.
    pub from_first: Summary,
    /// From the PATCH response, 0 for deliveries that came before it (the cache
    /// publishes a change before the write answers).
    pub from_response: Summary,
    /// Per change, first to last watcher.
    pub spread: Summary,
    /// Per change, the PATCH round trip.
    pub patch: Summary,
    /// Deliveries that came before the PATCH response.
    pub early: u64,
    /// Deliveries that never came.
    pub missed: u64,
    /// Per change details.
    pub changes: Vec<Change>,
}

/// The delays of every delivery: change `k` was sent at `sent[k]`, answered at
/// `answered[k]`, set `values[k]`, and `open` watches should have got it.
pub fn delays(logs: &[Log], sent: &[Instant], answered: &[Instant], values: &[i64], open: usize) -> Delays {
    let us = |d: Duration| d.as_micros() as u64;
    let (mut from_sent, mut from_first, mut from_response) = (Vec::new(), Vec::new(), Vec::new());
    let (mut early, mut missed) = (0, 0);
    let mut changes = Vec::with_capacity(sent.len());
    for k in 0..sent.len() {
        let arrivals: Vec<Instant> = logs.iter().filter_map(|l| l.arrivals.get(k).copied().flatten()).collect();
        missed += (open - arrivals.len()) as u64;
        let first = arrivals.iter().min().copied();
        let last = arrivals.iter().max().copied();
        for &at in &arrivals {
            early += u64::from(at < answered[k]);
            from_sent.push(us(at.saturating_duration_since(sent[k])));
            from_response.push(us(at.saturating_duration_since(answered[k])));
            from_first.push(first.map_or(0, |f| us(at.saturating_duration_since(f))));
        }
        changes.push(Change {
            replicas: values[k],
            patch_ms: answered[k].duration_since(sent[k]).as_secs_f64() * 1000.0,
            delivered: arrivals.len(),
            spread_ms: match (first, last) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64() * 1000.0,
                _ => 0.0,
            },
        });
    }
    let mut patch_us: Vec<u64> = changes.iter().map(|c| (c.patch_ms * 1000.0) as u64).collect();
    let mut spread_us: Vec<u64> = changes.iter().map(|c| (c.spread_ms * 1000.0) as u64).collect();
    Delays {
        from_sent: summarize_us(&mut from_sent),
        from_first: summarize_us(&mut from_first),
        from_response: summarize_us(&mut from_response),
        spread: summarize_us(&mut spread_us),
        patch: summarize_us(&mut patch_us),
        early,
        missed,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_per_delivery() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let logs = vec![
            Log { arrivals: vec![Some(ms(10))], ..Default::default() },
            Log { arrivals: vec![Some(ms(30))], ..Default::default() },
            Log { arrivals: vec![None], ..Default::default() },
        ];
        let d = delays(&logs, &[t0], &[ms(20)], &[2], 3);
        assert_eq!((d.missed, d.early), (1, 1));
        assert_eq!((d.from_sent.max_ms, d.from_first.max_ms, d.from_response.max_ms), (30.0, 20.0, 10.0));
        assert_eq!((d.changes[0].delivered, d.changes[0].spread_ms, d.changes[0].patch_ms), (2, 20.0, 20.0));
    }
}
