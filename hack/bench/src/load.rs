//! A closed-loop load generator: C workers, each with its own keep-alive
//! connection, send one request after another for a fixed time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::client::{H1, Target};
use crate::stats::{self, Summary};

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Paths, taken round-robin (each worker starts at its own offset).
    pub paths: Arc<Vec<String>>,
    /// The Accept header.
    pub accept: &'static str,
    /// Number of workers (and connections).
    pub concurrency: usize,
    /// Unmeasured time first, so connections and caches are warm.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
}

/// The figures of one load phase.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Requests completed in the measured window (errors included).
    pub requests: u64,
    /// Requests that failed (transport error or status other than 200).
    pub errors: u64,
    /// Up to a few distinct error messages.
    pub error_samples: Vec<String>,
    /// Measured wall time, seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Latency of successful requests.
    pub latency: Summary,
    /// Mean response body size, bytes.
    pub mean_body_bytes: u64,
}

#[derive(Default)]
struct WorkerTally {
    latencies_us: Vec<u64>,
    requests: u64,
    errors: u64,
    body_bytes: u64,
    error_samples: Vec<String>,
}

impl WorkerTally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 && !self.error_samples.contains(&what) {
            self.error_samples.push(what);
        }
    }
}

async fn worker(
    target: Target,
    mut conn: H1,
    plan: Plan,
    offset: usize,
    measure_from: Instant,
    end: Instant,
) -> WorkerTally {
    let mut tally = WorkerTally::default();
    let mut i = offset;
    while Instant::now() < end {
        let path = &plan.paths[i % plan.paths.len()];
        i += 1;
        let started = Instant::now();
        let result = conn.get(path, plan.accept).await;
        let elapsed = started.elapsed();
        let measured = started >= measure_from;
        match result {
            Ok((status, len)) if status == 200 => {
                if measured {
                    tally.requests += 1;
                    tally.latencies_us.push(elapsed.as_micros() as u64);
                    tally.body_bytes += len as u64;
                }
            }
            Ok((status, _)) => {
                if measured {
                    tally.requests += 1;
                    tally.error(format!("HTTP {status}"));
                }
            }
            Err(e) => {
                if measured {
                    tally.requests += 1;
                    tally.error(format!("{e:#}"));
                }
                // The connection is probably gone: make a new one, pausing so a down server is not hammered.
                tokio::time::sleep(Duration::from_millis(10)).await;
                match target.h1().await {
                    Ok(c) => conn = c,
                    Err(e) => tally.error(format!("reconnect: {e:#}")),
                }
            }
        }
    }
    tally
}

/// Runs `plan` against `target`: connects every worker first, then warms up, then measures.
pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(plan.concurrency);
    for i in 0..plan.concurrency {
        conns.push(target.h1().await.with_context(|| format!("connection {i}"))?);
    }
    let measure_from = Instant::now() + plan.warmup;
    let end = measure_from + plan.duration;
    let stride = plan.paths.len() / plan.concurrency.max(1) + 1;
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(worker(target.clone(), conn, plan.clone(), i * stride, measure_from, end)))
        .collect();
    let mut total = WorkerTally::default();
    for w in futures::future::join_all(workers).await {
        let t = w.context("load worker panicked")?;
        total.latencies_us.extend(t.latencies_us);
        total.requests += t.requests;
        total.errors += t.errors;
        total.body_bytes += t.body_bytes;
        for e in t.error_samples {
            if total.error_samples.len() < 5 && !total.error_samples.contains(&e) {
                total.error_samples.push(e);
            }
        }
    }
    // Workers stop starting requests at `end`; the last ones finish a little after.
    let seconds = measure_from.elapsed().as_secs_f64();
    let ok = total.latencies_us.len() as u64;
    Ok(Outcome {
        requests: total.requests,
        errors: total.errors,
        error_samples: total.error_samples,
        seconds,
        throughput_rps: (ok as f64 / seconds * 10.0).round() / 10.0,
        latency: stats::summarize_us(&mut total.latencies_us),
        mean_body_bytes: total.body_bytes.checked_div(ok).unwrap_or(0),
    })
}
