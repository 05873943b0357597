//! When and how long to wait before retrying a call: pure decisions, no I/O.

use std::time::Duration;

/// Exponential backoff with full jitter, bounded in attempts and delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry, before jitter.
    pub base_delay: Duration,
    /// Upper bound of any single delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // go-retryablehttp (egoscale) makes 4 retries waiting 1..30 s; we start
        // lower because most faults we see are brief, and still cap at 30 s.
        RetryPolicy { max_retries: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(30) }
    }
}

/// What a failed attempt looked like, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made: the request was never sent.
    Connect,
    /// The request may have reached the server (timeout, reset mid-flight).
    InFlight,
    /// The server answered with this status, maybe with `Retry-After`.
    Status(u16, Option<Duration>),
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), or `None` to give up.
    ///
    /// Non-idempotent requests (`idempotent == false`, i.e. POST) are retried
    /// only when the orchestrator cannot have acted on them: no connection,
    /// 429 or 503. A timeout after sending, or a 500/502/504 (which a proxy may
    /// answer after the orchestrator acted), could mean the create happened, so
    /// retrying it could duplicate a resource: the caller must look first.
    /// `jitter` is a sample in `[0, 1)`.
    pub fn delay(&self, attempt: u32, failure: Failure, idempotent: bool, jitter: f64) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let retry_after = match failure {
            Failure::Connect => None,
            Failure::InFlight if idempotent => None,
            Failure::InFlight => return None,
            Failure::Status(429, retry_after) => retry_after,
            Failure::Status(501, _) => return None,
            // 503 says the request was not taken; any other 5xx may come from a proxy
            // after the orchestrator applied it, so only idempotent requests repeat it.
            Failure::Status(503, _) => None,
            Failure::Status(code, _) if (500..600).contains(&code) && idempotent => None,
            Failure::Status(..) => return None,
        };
        if let Some(after) = retry_after {
            return Some(after.min(self.max_delay));
        }
        let exp = self.base_delay.saturating_mul(1u32 << (attempt - 1).min(16));
        let capped = exp.min(self.max_delay);
        // Full jitter, but never below half the step, so retries still spread out in time.
        Some(capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0))
    }
}

/// Parses a `Retry-After` header given in seconds; HTTP dates fall back to backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) }
    }

    #[test]
    fn backs_off_exponentially_and_gives_up() {
        let p = policy();
        let d = |n| p.delay(n, Failure::Status(503, None), true, 1.0);
        assert_eq!(d(1), Some(Duration::from_millis(100)));
        assert_eq!(d(2), Some(Duration::from_millis(200)));
        assert_eq!(d(3), Some(Duration::from_millis(400)));
        assert_eq!(d(4), None);
        assert_eq!(p.delay(1, Failure::Status(503, None), true, 0.0), Some(Duration::from_millis(50)));
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay(1, Failure::Status(429, Some(Duration::from_millis(700))), false, 0.3),
            Some(Duration::from_millis(700))
        );
        assert_eq!(
            p.delay(1, Failure::Status(429, Some(Duration::from_secs(90))), true, 0.3),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn never_retries_client_errors_or_501() {
        let p = policy();
        for code in [400, 401, 403, 404, 409, 422, 501] {
            assert_eq!(p.delay(1, Failure::Status(code, None), true, 0.5), None, "{code}");
        }
    }

    #[test]
    fn posts_are_not_retried_when_they_may_have_been_applied() {
        let p = policy();
        assert_eq!(p.delay(1, Failure::InFlight, false, 0.5), None);
        assert!(p.delay(1, Failure::InFlight, true, 0.5).is_some());
        assert!(p.delay(1, Failure::Connect, false, 0.5).is_some());
        assert!(p.delay(1, Failure::Status(503, None), false, 0.5).is_some());
        for code in [500, 502, 504] {
            assert_eq!(p.delay(1, Failure::Status(code, None), false, 0.5), None, "{code} may follow an applied POST");
            assert!(p.delay(1, Failure::Status(code, None), true, 0.5).is_some(), "{code}");
        }
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
