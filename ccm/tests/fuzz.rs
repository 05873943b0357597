//! Property tests of hostile input to `sks-ccm`: the LoadBalancer annotation
//! parser and CSR parsing and approval. Properties: no panic, every error
//! carries a message, and nothing invalid gets through (an approved mutated CSR
//! asks for exactly what the original asked for).
//!
//! Cases per property: `PROPTEST_CASES` (default 256, the CI short mode); e.g.
//! `PROPTEST_CASES=100000 cargo nextest run -p sks-ccm --test fuzz` for a long run.
#![expect(clippy::unwrap_used, reason = "test support: a panic is how a check fails")]

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use proptest::prelude::*;
use sks_ccm::csr::{self, CsrFacts, Decision};
use sks_ccm::lb::annotations::{KEYS, PREFIX, parse, parse_go_duration};
use sks_keys::KUBELET_SERVING_SIGNER as KUBELET_SERVING;

// ---------------------------------------------------------------------------
// Annotations

/// Values that are valid for some key, near misses, and noise.
fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("round-robin".to_owned()),
        Just("source-hash".to_owned()),
        Just("maglev-hash".to_owned()),
        Just("tcp".to_owned()),
        Just("http".to_owned()),
        Just("https".to_owned()),
        Just("/healthz".to_owned()),
        Just("0b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11".to_owned()),
        (0u32..400).prop_map(|n| n.to_string()),
        (0u32..400, prop::sample::select(vec!["s", "m", "ms", "h", "us", "ns", "", "x"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        "[0-9.]{0,6}[a-zµ]{0,3}",
        "[ -~]{0,20}",
        any::<String>(),
        // Longer than every limit.
        "[a-z]{250,260}",
    ]
}

fn annotation_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(|k| format!("{PREFIX}{k}")),
        1 => "[a-z-]{0,30}".prop_map(|k| format!("{PREFIX}{k}")),
        1 => any::<String>(),
    ]
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

proptest! {
    #[test]
    fn annotations_never_panic_and_explain_every_error(
        annotations in prop::collection::btree_map(annotation_key(), annotation_value(), 0..12)
    ) {
        match parse(&annotations) {
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(e.key.starts_with(PREFIX), "{e}");
                    prop_assert!(!e.expected.is_empty(), "{e}");
                    let text = e.to_string();
                    prop_assert!(text.contains(&e.key) && text.contains(&e.expected), "{text}");
                }
            }
            Ok(c) => {
                // Whatever is accepted is within what an NLB takes.
                prop_assert!((5..=300).contains(&secs(c.interval)) && c.interval.subsec_nanos() == 0);
                prop_assert!((2..=60).contains(&secs(c.timeout)) && c.timeout.subsec_nanos() == 0);
                prop_assert!(c.interval >= c.timeout);
                prop_assert!((1..=20).contains(&c.retries));
                prop_assert!(c.healthcheck_port != Some(0));
                prop_assert!(c.healthcheck_uri.as_deref().is_none_or(|u| u.starts_with('/')));
                prop_assert!(c.nodepool_name.is_none() || c.cluster_name.is_some());
                prop_assert!(!c.external || c.id.is_some() || c.name.is_some());
                for text in [&c.name, &c.description, &c.service_name, &c.service_description] {
                    prop_assert!(text.as_ref().is_none_or(|t| t.chars().count() <= 255 && !t.is_empty()));
                }
                // Unknown keys under the prefix are always errors.
                prop_assert!(annotations.keys().all(|k| k.strip_prefix(PREFIX).is_none_or(|s| KEYS.contains(&s))));
            }
        }
    }

    #[test]
    fn go_durations_never_panic(s in prop_oneof![any::<String>(), "[-+]?[0-9.]{0,25}[a-zµμ]{0,3}([0-9.]{0,25}[a-zµμ]{0,3}){0,3}"]) {
        let _ = parse_go_duration(&s);
    }

    #[test]
    fn go_durations_of_whole_units_are_exact(n in 0u64..1_000_000, unit in 0usize..7) {
        let (name, ns) = [("ns", 1u64), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)][unit];
        prop_assert_eq!(parse_go_duration(&format!("{n}{name}")), Some(Duration::from_nanos(n * ns)));
    }

    #[test]
    fn go_durations_add_up(a in "[0-9]{1,4}(\\.[0-9]{0,3})?(h|m|s|ms|us|ns)", b in "[0-9]{1,4}(\\.[0-9]{0,3})?(h|m|s|ms|us|ns)") {
        let (x, y) = (parse_go_duration(&a).unwrap(), parse_go_duration(&b).unwrap());
        prop_assert_eq!(parse_go_duration(&format!("{a}{b}")), Some(x + y));
    }

    #[test]
    fn go_durations_round_trip(nanos in 0u64..(i64::MAX as u64)) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_go_duration(&format!("{}s{}ns", d.as_secs(), d.subsec_nanos())), Some(d));
    }
}

// ---------------------------------------------------------------------------
// CSRs

const NODE: &str = "pool-4f2a1-abcde";
const IP: &str = "198.51.100.7";

/// A kubelet serving CSR a node would really send (built once: key generation is slow).
fn real_csr() -> &'static (String, Vec<u8>) {
    static CSR: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    CSR.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![NODE.to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress(IP.parse().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("system:node:{NODE}"));
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
        let csr = params.serialize_request(&key).unwrap();
        (csr.pem().unwrap(), csr.der().to_vec())
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn instance(name: &str) -> orchestrator::model::Instance {
    serde_json::from_value(serde_json::json!({
        "id": "6f0e0b9a-1f3c-4c1e-9a39-3c6f0e0b9a11", "name": name, "state": "running",
        "instance-type": {"id": "0b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11"}, "public-ip": IP,
    }))
    .unwrap()
}

fn facts(request_pem: String) -> CsrFacts {
    CsrFacts {
        signer: KUBELET_SERVING.to_owned(),
        username: format!("system:node:{NODE}"),
        groups: vec!["system:nodes".to_owned(), "system:authenticated".to_owned()],
        usages: vec!["digital signature".to_owned(), "server auth".to_owned()],
        request_pem,
        decided: false,
    }
}

fn decide(f: &CsrFacts) -> Decision {
    csr::decide(f, |name| name.eq_ignore_ascii_case(NODE).then(|| instance(NODE)))
}

/// A byte-level mutation of a DER document.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn mutate(der: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut d = der.to_vec();
    for m in mutations {
        if d.is_empty() {
            break;
        }
        let at = |i: &usize, d: &Vec<u8>| i % d.len();
        match m {
            Mutation::Flip(i, b) => {
                let i = at(i, &d);
                d[i] ^= b;
            }
            Mutation::Set(i, b) => {
                let i = at(i, &d);
                d[i] = *b;
            }
            Mutation::Truncate(i) => d.truncate(at(i, &d)),
            Mutation::Insert(i, bytes) => {
                let i = at(i, &d);
                d.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = at(i, &d);
                let end = (i + n).min(d.len());
                d.drain(i..end);
            }
            Mutation::Append(bytes) => d.extend_from_slice(bytes),
        }
    }
    d
}

fn assert_decided_with_reason(decision: &Decision) -> Result<(), TestCaseError> {
    if let Decision::Deny(why) = decision {
        prop_assert!(!why.trim().is_empty(), "a denial without a reason");
    }
    Ok(())
}

#[test]
fn a_starting_instance_waits_and_a_stopped_one_is_denied() {
    let (pem, _) = real_csr();
    let in_state = |state: &str| {
        let mut i = instance(NODE);
        i.state = serde_json::from_value(serde_json::json!(state)).unwrap();
        csr::decide(&facts(pem.clone()), |_| Some(i.clone()))
    };
    assert!(matches!(in_state("starting"), Decision::Wait(why) if why.contains("starting")));
    assert!(matches!(in_state("stopped"), Decision::Deny(why) if why.contains("stopped, not running")));
    assert_eq!(in_state("running"), Decision::Approve);
}

#[test]
fn the_real_csr_is_approved() {
    let (pem, _) = real_csr();
    assert_eq!(decide(&facts(pem.clone())), Decision::Approve);
    let req = csr::parse_request(pem).unwrap();
    assert_eq!(
        (req.dns.as_slice(), req.ips.as_slice()),
        ([NODE.to_owned()].as_slice(), [IP.parse::<IpAddr>().unwrap()].as_slice())
    );
    // Trailing bytes after the DER (which Go's parser, used by the signer, refuses) are refused here too.
    let mut der = real_csr().1.clone();
    der.push(0);
    assert!(
        matches!(decide(&facts(self::pem("CERTIFICATE REQUEST", &der))), Decision::Deny(why) if why.contains("trailing data"))
    );
}

proptest! {
    #[test]
    fn mutated_csrs_never_get_more_than_the_original(mutations in prop::collection::vec(mutation(), 1..4)) {
        let (_, der) = real_csr();
        let mutated = mutate(der, &mutations);
        let pem = pem("CERTIFICATE REQUEST", &mutated);
        let decision = decide(&facts(pem.clone()));
        assert_decided_with_reason(&decision)?;
        match csr::parse_request(&pem) {
            Ok(req) => {
                // A request that still verifies was signed by the key: the claims cannot have changed.
                prop_assert_eq!(req, csr::parse_request(&real_csr().0).unwrap());
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                prop_assert!(matches!(decision, Decision::Deny(_)), "{decision:?}");
            }
        }
    }

    #[test]
    fn arbitrary_der_is_denied_with_a_reason(der in prop::collection::vec(any::<u8>(), 0..600), label in prop_oneof![Just("CERTIFICATE REQUEST".to_owned()), Just("CERTIFICATE".to_owned()), "[A-Z ]{0,20}"]) {
        let decision = decide(&facts(pem(&label, &der)));
        assert_decided_with_reason(&decision)?;
        prop_assert_ne!(decision, Decision::Approve);
    }

    #[test]
    fn arbitrary_text_is_denied_with_a_reason(text in prop_oneof![
        any::<String>(),
        "-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]{0,400}\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----[ -~\n]{0,200}",
    ]) {
        let decision = decide(&facts(text));
        assert_decided_with_reason(&decision)?;
        prop_assert_ne!(decision, Decision::Approve);
    }

    #[test]
    fn facts_other_than_the_request_are_checked(
        signer in prop_oneof![Just(KUBELET_SERVING.to_owned()), any::<String>()],
        username in prop_oneof![Just(format!("system:node:{NODE}")), Just("system:node:".to_owned()), Just("system:node:other".to_owned()), any::<String>()],
        groups in prop::collection::vec(prop_oneof![Just("system:nodes".to_owned()), any::<String>()], 0..3),
        usages in prop::collection::vec(prop_oneof![Just("server auth".to_owned()), Just("digital signature".to_owned()), Just("client auth".to_owned()), any::<String>()], 0..4),
        decided: bool,
    ) {
        let f = CsrFacts { signer, username, groups, usages, request_pem: real_csr().0.clone(), decided };
        let decision = decide(&f);
        assert_decided_with_reason(&decision)?;
        if decision == Decision::Approve {
            prop_assert!(f.signer == KUBELET_SERVING && !f.decided);
            prop_assert_eq!(f.username, format!("system:node:{NODE}"));
            prop_assert!(f.groups.iter().any(|g| g == "system:nodes"));
            prop_assert!(f.usages.iter().any(|u| u == "server auth"));
            prop_assert!(f.usages.iter().all(|u| ["server auth", "digital signature", "key encipherment"].contains(&u.as_str())));
        }
        if f.signer != KUBELET_SERVING || f.decided {
            prop_assert_eq!(decision, Decision::Ignore);
        }
    }
}
