//! Fault injection into the orchestrator API (never into `/admin`): rules set
//! at start (`--faults`, `--faults-file`) or at run time (`PUT /admin/faults`),
//! each applying to a share of the calls to some operations or to all of them.
//!
//! A rule does one of: answer an HTTP error (`status`, with `retry-after` for a
//! 429), close the connection without any answer (`reset`), or start an
//! operation that ends in `failure` or stays `pending` forever without applying
//! the write (`operation-state`); and/or it delays the call (`latency-ms`).
//! With `after`, an error or reset comes once the call was carried out: an
//! answer lost on its way back.
//!
//! Drawing: the rules that answer instead of the handler share one draw, in
//! order, so `[{ratio 0.2, 503}, {ratio 0.1, 429}]` answers exactly 20% of the
//! calls 503 and 10% 429 (shares past a total of 1 are cut). A rule that only
//! adds latency is drawn on its own. An answering rule that also has latency
//! adds it only when it is the one drawn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest latency a rule may add (10 minutes).
const MAX_LATENCY_MS: u64 = 600_000;

/// Every active rule. The admin body is `{"rules": [...]}`, or one rule alone
/// (the original single-rule body: `{"ratio", "status", "retry-after", "operations", "after"}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// The rules, in drawing order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One fault rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// Share of the matching calls the rule applies to, 0 to 1; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Only calls of these operations (OpenAPI operation ids, e.g. `get-instance`); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    /// Added latency in milliseconds: `200`, or a range `[100, 300]` drawn uniformly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Answer this status (400 to 599) instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Close the connection without answering anything.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reset: bool,
    /// Answer a `pending` operation that ends in `failure` or never ends; the
    /// write is not applied. Only calls that answer an operation match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<StuckState>,
    /// With `status` or `reset`: carry the call out first, then answer the fault.
    #[serde(default, skip_serializing_if = "is_false")]
    pub after: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// How an injected operation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StuckState {
    /// `failure` (reason `fault`) at the first poll.
    Failure,
    /// `pending` forever: the client's wait times out.
    Pending,
}

/// Added latency: fixed, or uniform in an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Latency {
    /// Shortest, in milliseconds.
    pub min_ms: u64,
    /// Longest, in milliseconds.
    pub max_ms: u64,
}

impl TryFrom<Value> for Latency {
    type Error = String;

    fn try_from(v: Value) -> Result<Self, String> {
        let ms = |v: &Value| v.as_u64().ok_or_else(|| format!("expected milliseconds (an integer >= 0), got {v}"));
        let (min_ms, max_ms) = match &v {
            Value::Array(a) if a.len() == 2 => (ms(&a[0])?, ms(&a[1])?),
            Value::Array(_) => return Err(format!("expected [min, max], got {v}")),
            other => {
                let n = ms(other)?;
                (n, n)
            }
        };
        if min_ms > max_ms {
            return Err(format!("range [{min_ms}, {max_ms}]: min is above max"));
        }
        if max_ms > MAX_LATENCY_MS {
            return Err(format!("{max_ms} ms: at most {MAX_LATENCY_MS}"));
        }
        Ok(Latency { min_ms, max_ms })
    }
}

impl From<Latency> for Value {
    fn from(l: Latency) -> Value {
        if l.min_ms == l.max_ms { json!(l.min_ms) } else { json!([l.min_ms, l.max_ms]) }
    }
}

/// What an injected fault answers instead of the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An error status.
    Status {
        /// The status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
        /// Carry the call out first.
        after: bool,
    },
    /// No answer: the connection is closed.
    Reset {
        /// Carry the call out first.
        after: bool,
    },
    /// An operation that fails or never completes, the write not applied.
    Operation(StuckState),
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Wait this long first.
    pub delay: Duration,
    /// Then answer this instead of the handler (`None`: the handler answers).
    pub answer: Option<Answer>,
}

impl Rule {
    fn share(&self) -> f64 {
        self.ratio.unwrap_or(1.0)
    }

    /// What it answers, if it answers anything.
    fn answer(&self) -> Option<Answer> {
        if let Some(status) = self.status {
            return Some(Answer::Status { status, retry_after: self.retry_after, after: self.after });
        }
        if self.reset {
            return Some(Answer::Reset { after: self.after });
        }
        self.operation_state.map(Answer::Operation)
    }

    fn matches(&self, operation: &str, answers_operation: bool) -> bool {
        if self.operations.as_ref().is_some_and(|ops| !ops.iter().any(|o| o == operation)) {
            return false;
        }
        self.operation_state.is_none() || answers_operation
    }

    fn validate(&self, known_operation: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let ratio = self.share();
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!("ratio: {ratio} is not between 0 and 1"));
        }
        let effects =
            usize::from(self.status.is_some()) + usize::from(self.reset) + usize::from(self.operation_state.is_some());
        if effects > 1 {
            return Err("status, reset and operation-state exclude each other: one per rule".to_owned());
        }
        if effects == 0 && self.latency_ms.is_none() {
            return Err("the rule does nothing: give status, reset, operation-state or latency-ms".to_owned());
        }
        if let Some(status) = self.status
            && !(400..=599).contains(&status)
        {
            return Err(format!("status: {status} is not an error status (400 to 599)"));
        }
        if self.retry_after.is_some() && self.status.is_none() {
            return Err("retry-after: only with status".to_owned());
        }
        if self.after && self.status.is_none() && !self.reset {
            return Err("after: only with status or reset".to_owned());
        }
        for op in self.operations.iter().flatten() {
            if !known_operation(op) {
                return Err(format!("operations: {op:?} is not an operation id of the API"));
            }
        }
        Ok(())
    }
}

impl Faults {
    /// Reads an admin body or flag value: `{"rules": [...]}` or one rule.
    pub fn parse(body: &[u8]) -> Result<Faults, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("faults: {e}"))?;
        let faults = if value.get("rules").is_some() {
            serde_json::from_value::<Faults>(value).map_err(|e| format!("faults: {e}"))?
        } else {
            Faults { rules: vec![serde_json::from_value::<Rule>(value).map_err(|e| format!("faults: {e}"))?] }
        };
        let spec = exo_openapi::Spec::embedded().operations();
        let known = |op: &str| spec.iter().any(|(_, _, id)| id == op);
        for (i, rule) in faults.rules.iter().enumerate() {
            rule.validate(&known).map_err(|e| format!("faults: rules[{i}]: {e}"))?;
        }
        Ok(faults)
    }

    /// What happens to a call of `operation` (`answers_operation`: its answer
    /// is an operation), drawing from `sample`, uniform in `[0, 1)`.
    pub fn draw(&self, operation: &str, answers_operation: bool, sample: &mut dyn FnMut() -> f64) -> Decision {
        let matching: Vec<&Rule> = self.rules.iter().filter(|r| r.matches(operation, answers_operation)).collect();
        if matching.is_empty() {
            return Decision::default();
        }
        let mut decision = Decision::default();
        let mut chosen: Option<&Rule> = None;
        if matching.iter().any(|r| r.answer().is_some()) {
            // In billionths, so shares add up exactly (0.2 + 0.1 is not 0.3 in floating point).
            let billionths = |x: f64| (x * 1e9).round() as u64;
            let u = billionths(sample()).min(999_999_999);
            let mut low = 0;
            for rule in matching.iter().filter(|r| r.answer().is_some()) {
                let high = (low + billionths(rule.share())).min(billionths(1.0));
                if u >= low && u < high {
                    chosen = Some(rule);
                    decision.answer = rule.answer();
                    break;
                }
                low = high;
            }
        }
        for rule in &matching {
            let Some(latency) = rule.latency_ms else { continue };
            let applies = match rule.answer() {
                Some(_) => chosen.is_some_and(|c| std::ptr::eq(c, *rule)),
                None => rule.share() >= 1.0 || sample() < rule.share(),
            };
            if applies {
                let span = (latency.max_ms - latency.min_ms) as f64;
                let ms = latency.min_ms + ((sample() * (span + 1.0)) as u64).min(latency.max_ms - latency.min_ms);
                decision.delay += Duration::from_millis(ms);
            }
        }
        decision
    }
}

/// The faults of `--faults` (JSON) or `--faults-file`, if given.
pub fn from_flags(json: Option<&str>, file: Option<&std::path::Path>) -> anyhow::Result<Option<Faults>> {
    use anyhow::Context as _;
    let faults = match (json, file) {
        (Some(json), _) => Faults::parse(json.as_bytes()).map_err(anyhow::Error::msg).context("--faults")?,
        (None, Some(path)) => {
            let bytes = std::fs::read(path).with_context(|| format!("--faults-file: reading {}", path.display()))?;
            Faults::parse(&bytes)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--faults-file {}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    tracing::warn!(rules = %serde_json::to_string(&faults).unwrap_or_default(), "fault injection on from the start");
    Ok(Some(faults))
}

/// Faults injected since the zone started, for tests' figures.
struct Counts {
    calls: AtomicU64,
    delayed: AtomicU64,
    delay_ms: AtomicU64,
    status: [AtomicU64; 200],
    resets: AtomicU64,
    failed_operations: AtomicU64,
    pending_operations: AtomicU64,
}

static COUNTS: Counts = Counts {
    calls: AtomicU64::new(0),
    delayed: AtomicU64::new(0),
    delay_ms: AtomicU64::new(0),
    status: [const { AtomicU64::new(0) }; 200],
    resets: AtomicU64::new(0),
    failed_operations: AtomicU64::new(0),
    pending_operations: AtomicU64::new(0),
};

/// Counts a call and the faults drawn for it.
pub fn count(decision: &Decision) {
    let c = &COUNTS;
    c.calls.fetch_add(1, Ordering::Relaxed);
    if !decision.delay.is_zero() {
        c.delayed.fetch_add(1, Ordering::Relaxed);
        c.delay_ms.fetch_add(decision.delay.as_millis() as u64, Ordering::Relaxed);
    }
    match decision.answer {
        None => {}
        Some(Answer::Status { status, .. }) => {
            if let Some(slot) = usize::from(status).checked_sub(400).and_then(|i| c.status.get(i)) {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(Answer::Reset { .. }) => {
            c.resets.fetch_add(1, Ordering::Relaxed);
        }
        Some(Answer::Operation(StuckState::Failure)) => {
            c.failed_operations.fetch_add(1, Ordering::Relaxed);
        }
        Some(Answer::Operation(StuckState::Pending)) => {
            c.pending_operations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The counts as JSON: `{"calls", "delayed", "delay-ms", "status": {"503": n}, "resets", "failed-operations", "pending-operations"}`.
pub fn counts() -> Value {
    let c = &COUNTS;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let status: serde_json::Map<String, Value> = c
        .status
        .iter()
        .enumerate()
        .filter(|(_, n)| load(n) > 0)
        .map(|(i, n)| ((400 + i).to_string(), json!(load(n))))
        .collect();
    json!({
        "calls": load(&c.calls),
        "delayed": load(&c.delayed),
        "delay-ms": load(&c.delay_ms),
        "status": status,
        "resets": load(&c.resets),
        "failed-operations": load(&c.failed_operations),
        "pending-operations": load(&c.pending_operations),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Faults, String> {
        Faults::parse(s.as_bytes())
    }

    /// A sample source returning `values` in turn (then 0.5).
    fn samples(values: &[f64]) -> impl FnMut() -> f64 + '_ {
        let mut i = 0;
        move || {
            i += 1;
            values.get(i - 1).copied().unwrap_or(0.5)
        }
    }

    #[test]
    fn the_single_rule_body_still_works() {
        let f = parse(r#"{"ratio": 0.33, "status": 503, "operations": null, "after": false}"#).unwrap();
        assert_eq!(f.rules, vec![Rule { ratio: Some(0.33), status: Some(503), ..Default::default() }]);
        let f = parse(r#"{"ratio": 1, "status": 502, "operations": ["create-load-balancer"], "after": true}"#).unwrap();
        assert_eq!(
            f.draw("create-load-balancer", true, &mut samples(&[0.99])).answer,
            Some(Answer::Status { status: 502, retry_after: None, after: true })
        );
        assert_eq!(f.draw("list-load-balancers", false, &mut samples(&[0.0])), Decision::default());
        // Turning faults off the old way.
        let off = parse(r#"{"ratio": 0.0, "status": 503, "operations": null, "after": false}"#).unwrap();
        assert_eq!(off.draw("get-instance", false, &mut samples(&[0.0])), Decision::default());
    }

    #[test]
    fn answering_rules_share_one_draw_in_order() {
        let f = parse(
            r#"{"rules": [{"ratio": 0.2, "status": 503}, {"ratio": 0.1, "status": 429, "retry-after": 1}, {"latency-ms": 200}]}"#,
        )
        .unwrap();
        let answer = |u: f64| f.draw("get-instance", false, &mut samples(&[u])).answer;
        assert_eq!(answer(0.0), Some(Answer::Status { status: 503, retry_after: None, after: false }));
        assert_eq!(answer(0.199), Some(Answer::Status { status: 503, retry_after: None, after: false }));
        assert_eq!(answer(0.2), Some(Answer::Status { status: 429, retry_after: Some(1), after: false }));
        assert_eq!(answer(0.299), Some(Answer::Status { status: 429, retry_after: Some(1), after: false }));
        assert_eq!(answer(0.3), None);
        assert_eq!(answer(0.999), None);
        // The latency rule applies to every call, answered or not.
        for u in [0.0, 0.25, 0.9] {
            assert_eq!(f.draw("get-instance", false, &mut samples(&[u])).delay, Duration::from_millis(200));
        }
    }

    #[test]
    fn shares_past_one_are_cut() {
        let f = parse(r#"{"rules": [{"ratio": 0.8, "status": 503}, {"ratio": 0.8, "reset": true}]}"#).unwrap();
        assert_eq!(
            f.draw("x", false, &mut samples(&[0.79])).answer,
            Some(Answer::Status { status: 503, retry_after: None, after: false })
        );
        assert_eq!(f.draw("x", false, &mut samples(&[0.8])).answer, Some(Answer::Reset { after: false }));
        assert_eq!(f.draw("x", false, &mut samples(&[0.9999])).answer, Some(Answer::Reset { after: false }));
        // A ratio of 1 answers every call, whatever the draw.
        let f = parse(r#"{"status": 503}"#).unwrap();
        assert!(f.draw("x", false, &mut samples(&[0.999_999_999_9])).answer.is_some());
    }

    #[test]
    fn rules_match_their_operations_only() {
        let f = parse(
            r#"{"rules": [{"operations": ["get-instance"], "status": 500}, {"operations": ["scale-sks-nodepool"], "operation-state": "failure"}]}"#,
        )
        .unwrap();
        assert_eq!(
            f.draw("get-instance", false, &mut samples(&[0.5])).answer,
            Some(Answer::Status { status: 500, retry_after: None, after: false })
        );
        assert_eq!(
            f.draw("scale-sks-nodepool", true, &mut samples(&[0.5])).answer,
            Some(Answer::Operation(StuckState::Failure))
        );
        assert_eq!(f.draw("list-instances", false, &mut samples(&[0.0])), Decision::default());
    }

    #[test]
    fn operation_rules_only_match_calls_that_answer_an_operation() {
        let f = parse(r#"{"rules": [{"ratio": 0.5, "operation-state": "pending"}, {"ratio": 0.5, "status": 503}]}"#)
            .unwrap();
        // A GET takes no share of the pending rule: the 503 rule gets the first half of the draw.
        assert_eq!(
            f.draw("get-instance", false, &mut samples(&[0.1])).answer,
            Some(Answer::Status { status: 503, retry_after: None, after: false })
        );
        assert_eq!(f.draw("get-instance", false, &mut samples(&[0.6])).answer, None);
        assert_eq!(
            f.draw("create-load-balancer", true, &mut samples(&[0.1])).answer,
            Some(Answer::Operation(StuckState::Pending))
        );
        assert_eq!(
            f.draw("create-load-balancer", true, &mut samples(&[0.6])).answer,
            Some(Answer::Status { status: 503, retry_after: None, after: false })
        );
    }

    #[test]
    fn latency_is_fixed_or_drawn_from_its_range() {
        let f = parse(r#"{"rules": [{"latency-ms": [100, 300]}]}"#).unwrap();
        assert_eq!(f.draw("x", false, &mut samples(&[0.0])).delay, Duration::from_millis(100));
        assert_eq!(f.draw("x", false, &mut samples(&[0.5])).delay, Duration::from_millis(200));
        assert_eq!(f.draw("x", false, &mut samples(&[0.999_999])).delay, Duration::from_millis(300));
        // A partial latency rule draws its share first, then the delay.
        let f = parse(r#"{"rules": [{"ratio": 0.25, "latency-ms": 50}]}"#).unwrap();
        assert_eq!(f.draw("x", false, &mut samples(&[0.2, 0.0])).delay, Duration::from_millis(50));
        assert_eq!(f.draw("x", false, &mut samples(&[0.3, 0.0])).delay, Duration::ZERO);
        // An answering rule's latency comes only with its answer.
        let f = parse(r#"{"rules": [{"ratio": 0.5, "status": 504, "latency-ms": 1000}]}"#).unwrap();
        assert_eq!(f.draw("x", false, &mut samples(&[0.4])).delay, Duration::from_secs(1));
        assert_eq!(f.draw("x", false, &mut samples(&[0.6])).delay, Duration::ZERO);
        // Latencies of several rules add up.
        let f = parse(r#"{"rules": [{"latency-ms": 10}, {"latency-ms": 20}]}"#).unwrap();
        assert_eq!(f.draw("x", false, &mut samples(&[])).delay, Duration::from_millis(30));
    }

    #[test]
    fn shares_come_out_as_configured() {
        let f = parse(r#"{"rules": [{"ratio": 0.2, "status": 503}, {"ratio": 0.1, "status": 429}]}"#).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let mut sample = || rand::Rng::random::<f64>(&mut rng);
        let (mut s503, mut s429) = (0, 0);
        for _ in 0..100_000 {
            match f.draw("get-instance", false, &mut sample).answer {
                Some(Answer::Status { status: 503, .. }) => s503 += 1,
                Some(Answer::Status { status: 429, .. }) => s429 += 1,
                None => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!((19_000..21_000).contains(&s503), "{s503}");
        assert!((9_300..10_700).contains(&s429), "{s429}");
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let err = |s: &str| parse(s).unwrap_err();
        assert!(err(r#"{"ratio": 1.5, "status": 503}"#).contains("ratio: 1.5 is not between 0 and 1"));
        assert!(err(r#"{"status": 200}"#).contains("not an error status"));
        assert!(err(r#"{"status": 503, "reset": true}"#).contains("exclude each other"));
        assert!(err(r#"{"ratio": 0.5}"#).contains("does nothing"));
        assert!(err(r#"{"reset": true, "retry-after": 3}"#).contains("retry-after: only with status"));
        assert!(err(r#"{"operation-state": "failure", "after": true}"#).contains("after: only with"));
        assert!(
            err(r#"{"status": 503, "operations": ["get-instances"]}"#)
                .contains("\"get-instances\" is not an operation id")
        );
        assert!(err(r#"{"latency-ms": [300, 100]}"#).contains("min is above max"));
        assert!(err(r#"{"latency-ms": 600001}"#).contains("at most"));
        assert!(err(r#"{"latency-ms": "fast"}"#).contains("expected milliseconds"));
        assert!(err(r#"{"operation-state": "stuck"}"#).contains("unknown variant"));
        assert!(err(r#"{"rules": [{"status": 503}, {"latncy-ms": 5}]}"#).contains("unknown field `latncy-ms`"));
        assert!(err(r#"{"rules": [{"status": 503}, {"ratio": -1, "status": 503}]}"#).contains("rules[1]: ratio"));
        assert_eq!(parse(r#"{"rules": []}"#).unwrap(), Faults::default());
    }

    #[test]
    fn flags_give_the_rules_from_json_or_a_file() {
        assert_eq!(from_flags(None, None).unwrap(), None);
        let json = r#"{"rules": [{"ratio": 0.5, "status": 503}]}"#;
        let from_json = from_flags(Some(json), None).unwrap().unwrap();
        assert_eq!(from_json.rules, vec![Rule { ratio: Some(0.5), status: Some(503), ..Default::default() }]);
        let path = std::env::temp_dir().join(format!("sks-zone-faults-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, json).unwrap();
        assert_eq!(from_flags(None, Some(&path)).unwrap(), Some(from_json));
        std::fs::write(&path, r#"{"ratio": 2, "status": 503}"#).unwrap();
        let err = format!("{:#}", from_flags(None, Some(&path)).unwrap_err());
        assert!(err.contains("--faults-file") && err.contains("ratio: 2"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", from_flags(None, Some(&path)).unwrap_err());
        assert!(err.contains("reading"), "{err}");
    }

    #[test]
    fn rules_read_back_as_written() {
        let body = r#"{"rules":[{"ratio":0.2,"status":503},{"ratio":0.1,"status":429,"retry-after":1},{"latency-ms":[100,300]},{"operations":["create-load-balancer"],"reset":true,"after":true},{"ratio":0.05,"operation-state":"pending"}]}"#;
        let f = parse(body).unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), body);
        assert_eq!(parse(&serde_json::to_string(&f).unwrap()).unwrap(), f);
    }
}
