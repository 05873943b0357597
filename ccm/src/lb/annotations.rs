//! The only place that reads `service.beta.kubernetes.io/exoscale-loadbalancer-*`:
//! every key of the Exoscale CCM, with its meaning and default, parsed into a
//! typed configuration. Every error names the key, the value and what was expected,
//! and a Service with any invalid annotation is not acted on.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

pub use sks_keys::annotation::LB_PREFIX as PREFIX;
use sks_keys::annotation::lb;
pub use sks_keys::annotation::lb::ALL as KEYS;

/// How connections are spread over backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `round-robin` (default).
    RoundRobin,
    /// `source-hash`.
    SourceHash,
    /// `maglev-hash`.
    MaglevHash,
}

/// How backends are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `tcp` (default).
    Tcp,
    /// `http`.
    Http,
    /// `https`.
    Https,
}

/// One annotation error: the key, the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    /// The full annotation key.
    pub key: String,
    /// The value found.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl std::fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {} has value {:?}; expected {}", self.key, self.value, self.expected)
    }
}

/// The NLB configuration a Service's annotations ask for (defaults applied
/// where the Exoscale CCM applies them; `None` where it depends on the Service).
#[derive(Debug, Clone, PartialEq)]
pub struct LbConfig {
    /// `id`: the NLB.
    pub id: Option<Uuid>,
    /// `name`: the NLB's name (default `k8s-<service uid>`, applied by the controller).
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `external`: the NLB is managed elsewhere; never created or deleted.
    pub external: bool,
    /// `service-name` (one-port Services only).
    pub service_name: Option<String>,
    /// `service-description` (one-port Services only).
    pub service_description: Option<String>,
    /// `service-instancepool-id`.
    pub instance_pool: Option<Uuid>,
    /// `service-sks-nodepool-name` (with `sks-cluster-name`).
    pub nodepool_name: Option<String>,
    /// `sks-cluster-name`.
    pub cluster_name: Option<String>,
    /// `service-strategy`.
    pub strategy: Strategy,
    /// `service-healthcheck-mode` (`None`: not set, the controller picks by
    /// `externalTrafficPolicy`).
    pub mode: Option<Mode>,
    /// `service-healthcheck-port` (else the nodePort or healthCheckNodePort).
    pub healthcheck_port: Option<u16>,
    /// `service-healthcheck-uri`.
    pub healthcheck_uri: Option<String>,
    /// `service-healthcheck-interval` (default 10 s).
    pub interval: Duration,
    /// `service-healthcheck-timeout` (default 5 s).
    pub timeout: Duration,
    /// `service-healthcheck-retries` (default 1).
    pub retries: u32,
}

/// Parses a Go duration (`10s`, `1m30s`, `500ms`, `1.5s`) as `time.ParseDuration` does:
/// integer nanoseconds (a fraction goes through `float64`, as in Go), `None` on
/// overflow past Go's limit of 2^63-1 ns (about 292 years) and, since a
/// `Duration` cannot be negative, for negative values.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    const LIMIT: u64 = 1 << 63;
    let s = s.trim();
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return None;
        }
        // Leading integer; more than 2^63 is an error.
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &b[..int_len] {
            if v > LIMIT / 10 {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return None;
            }
        }
        rest = &rest[int_len..];
        // Fraction: digits past the precision of a u64 are read and dropped.
        let (mut f, mut scale, mut frac_len) = (0u64, 1f64, 0usize);
        if rest.starts_with('.') {
            rest = &rest[1..];
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for c in rest[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            rest = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return None;
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        if v > LIMIT / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            // As Go: float64 keeps nanosecond accuracy for fractions of an hour.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return None;
            }
        }
        total += v;
        if total > LIMIT {
            return None;
        }
    }
    if neg && total > 0 {
        return None;
    }
    if total > LIMIT - 1 {
        return None;
    }
    Some(Duration::from_nanos(total))
}

/// Parses every annotation of a Service; all problems are reported together.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<LbConfig, Vec<AnnotationError>> {
    let mut errors = Vec::new();
    let get = |suffix: &str| annotations.get(&format!("{PREFIX}{suffix}")).map(|v| v.trim().to_owned());
    let mut fail = |suffix: &str, value: &str, expected: &str| {
        errors.push(AnnotationError {
            key: format!("{PREFIX}{suffix}"),
            value: value.to_owned(),
            expected: expected.to_owned(),
        });
    };
    for key in annotations.keys() {
        if let Some(suffix) = key.strip_prefix(PREFIX)
            && !KEYS.contains(&suffix)
        {
            let value = annotations[key].clone();
            fail(suffix, &value, &format!("a known key; {suffix:?} is not one (known: {})", KEYS.join(", ")));
        }
    }
    let uuid = |suffix: &str, fail: &mut dyn FnMut(&str, &str, &str)| match get(suffix) {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => match Uuid::parse_str(&v) {
            Ok(id) => Some(id),
            Err(_) => {
                fail(suffix, &v, "a UUID");
                None
            }
        },
    };
    let id = uuid(lb::ID, &mut fail);
    let instance_pool = uuid(lb::SERVICE_INSTANCEPOOL_ID, &mut fail);
    let text = |suffix: &str, max: usize, fail: &mut dyn FnMut(&str, &str, &str)| match get(suffix) {
        Some(v) if v.chars().count() > max => {
            fail(suffix, &v, &format!("at most {max} characters"));
            None
        }
        Some(v) if v.is_empty() => None,
        other => other,
    };
    let name = text(lb::NAME, 255, &mut fail);
    let description = text(lb::DESCRIPTION, 255, &mut fail);
    let service_name = text(lb::SERVICE_NAME, 255, &mut fail);
    let service_description = text(lb::SERVICE_DESCRIPTION, 255, &mut fail);
    let nodepool_name = text(lb::SERVICE_SKS_NODEPOOL_NAME, 255, &mut fail);
    let cluster_name = text(lb::SKS_CLUSTER_NAME, 255, &mut fail);
    let external = match get(lb::EXTERNAL).as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            fail(lb::EXTERNAL, v, "\"true\" or \"false\"");
            false
        }
    };
    let strategy = match get(lb::SERVICE_STRATEGY).as_deref() {
        None | Some("") | Some("round-robin") => Strategy::RoundRobin,
        Some("source-hash") => Strategy::SourceHash,
        Some("maglev-hash") => Strategy::MaglevHash,
        Some(v) => {
            fail(lb::SERVICE_STRATEGY, v, "one of round-robin, source-hash, maglev-hash");
            Strategy::RoundRobin
        }
    };
    let mode = match get(lb::SERVICE_HEALTHCHECK_MODE).as_deref() {
        None | Some("") => None,
        Some("tcp") => Some(Mode::Tcp),
        Some("http") => Some(Mode::Http),
        Some("https") => Some(Mode::Https),
        Some(v) => {
            fail(lb::SERVICE_HEALTHCHECK_MODE, v, "one of tcp, http, https");
            None
        }
    };
    let healthcheck_port = match get(lb::SERVICE_HEALTHCHECK_PORT) {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                fail(lb::SERVICE_HEALTHCHECK_PORT, &v, "a port number from 1 to 65535");
                None
            }
        },
    };
    let healthcheck_uri = text(lb::SERVICE_HEALTHCHECK_URI, 255, &mut fail);
    if let Some(uri) = &healthcheck_uri
        && !uri.starts_with('/')
    {
        fail(lb::SERVICE_HEALTHCHECK_URI, uri, "an absolute path starting with /");
    }
    let duration = |suffix: &str,
                    default: Duration,
                    range: std::ops::RangeInclusive<u64>,
                    fail: &mut dyn FnMut(&str, &str, &str)| match get(suffix) {
        None => default,
        Some(v) if v.is_empty() => default,
        Some(v) => match parse_go_duration(&v) {
            Some(d) if range.contains(&d.as_secs()) && d.subsec_nanos() == 0 => d,
            Some(_) => {
                fail(
                    suffix,
                    &v,
                    &format!("a whole number of seconds from {}s to {}s (the NLB's range)", range.start(), range.end()),
                );
                default
            }
            None => {
                fail(suffix, &v, "a duration such as 10s or 1m");
                default
            }
        },
    };
    let interval = duration(lb::SERVICE_HEALTHCHECK_INTERVAL, Duration::from_secs(10), 5..=300, &mut fail);
    let timeout = duration(lb::SERVICE_HEALTHCHECK_TIMEOUT, Duration::from_secs(5), 2..=60, &mut fail);
    let retries = match get(lb::SERVICE_HEALTHCHECK_RETRIES) {
        None => 1,
        Some(v) if v.is_empty() => 1,
        Some(v) => match v.parse::<u32>() {
            Ok(r) if (1..=20).contains(&r) => r,
            _ => {
                fail(lb::SERVICE_HEALTHCHECK_RETRIES, &v, "a whole number from 1 to 20");
                1
            }
        },
    };
    if interval < timeout {
        let v = get(lb::SERVICE_HEALTHCHECK_INTERVAL).unwrap_or_else(|| "10s".into());
        fail(
            lb::SERVICE_HEALTHCHECK_INTERVAL,
            &v,
            &format!("at least the health check timeout ({}s)", timeout.as_secs()),
        );
    }
    if nodepool_name.is_some() && cluster_name.is_none() {
        let v = nodepool_name.clone().unwrap_or_default();
        fail(lb::SERVICE_SKS_NODEPOOL_NAME, &v, &format!("to be used with {PREFIX}sks-cluster-name"));
    }
    if external && id.is_none() && name.is_none() {
        fail(lb::EXTERNAL, "true", &format!("an existing NLB named by {PREFIX}id or {PREFIX}name"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LbConfig {
        id,
        name,
        description,
        external,
        service_name,
        service_description,
        instance_pool,
        nodepool_name,
        cluster_name,
        strategy,
        mode,
        healthcheck_port,
        healthcheck_uri,
        interval,
        timeout,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_exoscale_ccm() {
        let c = parse(&BTreeMap::new()).unwrap();
        assert_eq!(
            (c.strategy, c.mode, c.interval, c.timeout, c.retries, c.external),
            (Strategy::RoundRobin, None, Duration::from_secs(10), Duration::from_secs(5), 1, false)
        );
        assert_eq!((c.id, c.name, c.healthcheck_port), (None, None, None));
    }

    #[test]
    fn every_key_parses() {
        let id = Uuid::new_v4();
        let pool = Uuid::new_v4();
        let c = parse(&ann(&[
            ("id", &id.to_string()),
            ("name", "web"),
            ("description", "d"),
            ("service-name", "http"),
            ("service-description", "sd"),
            ("service-instancepool-id", &pool.to_string()),
            ("service-sks-nodepool-name", "workers"),
            ("sks-cluster-name", "demo"),
            ("service-strategy", "source-hash"),
            ("service-healthcheck-mode", "http"),
            ("service-healthcheck-port", "10256"),
            ("service-healthcheck-uri", "/healthz"),
            ("service-healthcheck-interval", "1m"),
            ("service-healthcheck-timeout", "3s"),
            ("service-healthcheck-retries", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (c.id, c.instance_pool, c.strategy, c.mode),
            (Some(id), Some(pool), Strategy::SourceHash, Some(Mode::Http))
        );
        assert_eq!(
            (c.healthcheck_port, c.healthcheck_uri.as_deref(), c.interval, c.timeout, c.retries),
            (Some(10256), Some("/healthz"), Duration::from_secs(60), Duration::from_secs(3), 3)
        );
        assert_eq!((c.nodepool_name.as_deref(), c.cluster_name.as_deref()), (Some("workers"), Some("demo")));
    }

    #[test]
    fn errors_name_key_value_and_expectation() {
        let errs = parse(&ann(&[
            ("id", "not-a-uuid"),
            ("service-strategy", "least-conn"),
            ("service-healthcheck-port", "70000"),
            ("service-healthcheck-interval", "fast"),
            ("service-healthcheck-retries", "0"),
            ("external", "yes"),
            ("service-helthcheck-mode", "tcp"),
        ]))
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        for needle in [
            "exoscale-loadbalancer-id has value \"not-a-uuid\"; expected a UUID",
            "service-strategy has value \"least-conn\"; expected one of round-robin, source-hash, maglev-hash",
            "service-healthcheck-port has value \"70000\"; expected a port number",
            "service-healthcheck-interval has value \"fast\"; expected a duration",
            "service-healthcheck-retries has value \"0\"; expected a whole number from 1 to 20",
            "external has value \"yes\"",
            "\"service-helthcheck-mode\" is not one",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn cross_field_rules() {
        let e =
            parse(&ann(&[("service-healthcheck-interval", "5s"), ("service-healthcheck-timeout", "10s")])).unwrap_err();
        assert!(e[0].expected.contains("at least the health check timeout"), "{e:?}");
        let e = parse(&ann(&[("service-sks-nodepool-name", "workers")])).unwrap_err();
        assert!(e[0].expected.contains("sks-cluster-name"));
        let e = parse(&ann(&[("external", "true")])).unwrap_err();
        assert!(e[0].expected.contains("an existing NLB"));
        assert!(parse(&ann(&[("external", "true"), ("name", "shared")])).unwrap().external);
        let e = parse(&ann(&[("service-healthcheck-interval", "1500ms")])).unwrap_err();
        assert!(e[0].expected.contains("whole number of seconds"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("10"), None, "Go requires a unit");
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("5.s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("."), None);
        assert_eq!(parse_go_duration("+1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("-0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("-5s"), None, "negative: Go parses it, no Duration holds it");
        assert_eq!(parse_go_duration("1\u{b5}s"), Some(Duration::from_micros(1)));
        // Go's arithmetic: 0.1h is exactly 6 minutes; below a nanosecond is dropped.
        assert_eq!(parse_go_duration("0.1h"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1.5000000009s"), Some(Duration::from_millis(1500)));
        // Past Go's 2^63-1 ns: an error there, not a panic here (from_secs_f64 used to panic).
        assert_eq!(parse_go_duration("2562048h"), None);
        assert_eq!(parse_go_duration("99999999999999999999999h"), None);
        assert_eq!(parse_go_duration("9223372036854775807ns"), Some(Duration::from_nanos(i64::MAX as u64)));
        assert_eq!(parse_go_duration("9223372036854775808ns"), None);
    }
}
