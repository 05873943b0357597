//! Property tests of hostile input to the orchestrator crate: the EXO2 signature
//! parser and verifier (arbitrary headers, bodies, queries and expiries: no
//! panic, errors with messages, a signature verifies only for the exact request
//! it was made for) and the JSON model (arbitrary and schema-shaped JSON into
//! every model type: no panic, and whatever parses serializes back to JSON that
//! parses to an equal value).
//!
//! Cases per property: `PROPTEST_CASES` (default 256, the CI short mode); e.g.
//! `PROPTEST_CASES=100000 cargo nextest run -p orchestrator --test fuzz` for a long run.
#![expect(clippy::unwrap_used, reason = "test support: a panic is how a check fails")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use orchestrator::model;
use orchestrator::signing::{self, Request, SignatureError};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Signatures

const NOW: i64 = 1_700_000_000;

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]).prop_map(str::to_owned),
        "[A-Z]{0,8}"
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (prop_oneof!["[a-z-]{1,8}", any::<String>()], prop_oneof!["[a-z0-9-]{0,8}", any::<String>()]),
        0..5,
    )
}

fn header_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        "credential=[A-Za-z0-9]{0,12}",
        "signed-query-args=[a-z;-]{0,20}",
        "expires=-?[0-9]{0,21}",
        "signature=[A-Za-z0-9+/=]{0,48}",
        "[a-z-]{0,10}=[ -~]{0,10}",
        "[ -~]{0,12}",
    ];
    (
        prop_oneof![Just("EXO2-HMAC-SHA256 ".to_owned()), Just("EXO2-HMAC-SHA256".to_owned()), "[ -~]{0,20}"],
        prop::collection::vec(field, 0..6),
    )
        .prop_map(|(scheme, fields)| format!("{scheme}{}", fields.join(",")))
}

proptest! {
    #[test]
    fn authorization_headers_never_panic(header in prop_oneof![header_text(), any::<String>()]) {
        match signing::parse_authorization(&header) {
            Ok(auth) => {
                prop_assert!(!auth.credential.is_empty() && !auth.signature.is_empty());
                // Verifying a parsed but forged header fails cleanly, whatever its expiry.
                let req = Request { method: "GET", path: "/v2/zone", query: &[], body: b"" };
                for now in [NOW, i64::MIN, i64::MAX - signing::MAX_EXPIRES_AHEAD_SECS, auth.expires] {
                    if let Err(e) = signing::verify(&auth, "secret", &req, now) {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("malformed Authorization header: "), "{e}"),
        }
    }

    #[test]
    fn a_signature_verifies_only_its_own_request(
        method in method(),
        path in prop_oneof!["/v2/[a-z/-]{0,30}", any::<String>()],
        query in query(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        secret in "[ -~]{1,40}",
        ttl in 0i64..=signing::MAX_EXPIRES_AHEAD_SECS,
        flip in any::<prop::sample::Index>(),
        late in 1i64..100_000,
    ) {
        let req = Request { method: &method, path: &path, query: &query, body: &body };
        let expires = NOW + ttl;
        let header = signing::authorization("EXOkey", &secret, &req, expires);
        let auth = signing::parse_authorization(&header).unwrap();
        prop_assert_eq!(auth.expires, expires);
        prop_assert_eq!(signing::verify(&auth, &secret, &req, NOW), Ok(()));
        prop_assert_eq!(signing::verify(&auth, &secret, &req, expires + late), Err(SignatureError::Expired(expires)));
        prop_assert_eq!(signing::verify(&auth, &format!("{secret}x"), &req, NOW), Err(SignatureError::Mismatch));
        // Any change to the body, the path or the method breaks it.
        if !body.is_empty() {
            let mut other = body.clone();
            let i = flip.index(other.len());
            other[i] ^= 0x01;
            prop_assert_eq!(signing::verify(&auth, &secret, &Request { body: &other, ..req }, NOW), Err(SignatureError::Mismatch));
        }
        let other_path = format!("{path}/x");
        prop_assert_eq!(signing::verify(&auth, &secret, &Request { path: &other_path, ..req }, NOW), Err(SignatureError::Mismatch));
        let other_method = format!("{method}X");
        prop_assert_eq!(signing::verify(&auth, &secret, &Request { method: &other_method, ..req }, NOW), Err(SignatureError::Mismatch));
        // And so does a changed value of any signed query parameter.
        for (name, _) in signing::signed_query_params(&query) {
            let changed: Vec<(String, String)> =
                query.iter().map(|(k, v)| if k == name { (k.clone(), format!("{v}x")) } else { (k.clone(), v.clone()) }).collect();
            prop_assert_eq!(signing::verify(&auth, &secret, &Request { query: &changed, ..req }, NOW), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn expiry_bounds_hold_for_any_value(expires in any::<i64>(), now in -(1i64 << 40)..(1i64 << 40)) {
        let req = Request { method: "GET", path: "/v2/zone", query: &[], body: b"" };
        let auth = signing::parse_authorization(&signing::authorization("k", "s", &req, expires)).unwrap();
        let r = signing::verify(&auth, "s", &req, now);
        if expires < now {
            prop_assert_eq!(r, Err(SignatureError::Expired(expires)));
        } else if expires > now + signing::MAX_EXPIRES_AHEAD_SECS {
            prop_assert_eq!(r, Err(SignatureError::TooFarAhead(expires)));
        } else {
            prop_assert_eq!(r, Ok(()));
        }
    }
}

// ---------------------------------------------------------------------------
// The JSON model

/// The model's fields as written in its source: (struct, JSON key, Rust type, flattened).
struct Schema {
    structs: BTreeMap<String, Vec<(String, String, bool)>>,
    enum_values: Vec<String>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let sources = [
            include_str!("../src/model/common.rs"),
            include_str!("../src/model/instance.rs"),
            include_str!("../src/model/instance_pool.rs"),
            include_str!("../src/model/load_balancer.rs"),
            include_str!("../src/model/operation.rs"),
            include_str!("../src/model/sks.rs"),
        ];
        let mut structs = BTreeMap::new();
        let mut enum_values = BTreeSet::new();
        for src in sources {
            let (mut current, mut rename, mut flatten) = (None::<String>, None::<String>, false);
            for line in src.lines() {
                let t = line.trim();
                for part in t.split("=> \"").skip(1) {
                    if let Some(v) = part.split('"').next() {
                        enum_values.insert(v.to_owned());
                    }
                }
                if let Some(name) = t.strip_prefix("pub struct ").and_then(|r| r.strip_suffix(" {")) {
                    current = Some(name.to_owned());
                    structs.insert(name.to_owned(), Vec::new());
                } else if line.starts_with('}') {
                    current = None;
                } else if t.contains("serde(flatten)") {
                    flatten = true;
                } else if let Some(r) = t.strip_prefix("#[serde(rename = \"") {
                    rename = r.split('"').next().map(str::to_owned);
                } else if let (Some(s), Some((name, ty))) =
                    (&current, t.strip_prefix("pub ").and_then(|field| field.split_once(':')))
                {
                    let key = rename.take().unwrap_or_else(|| name.trim().replace('_', "-"));
                    let ty = ty.trim().trim_end_matches(',').to_owned();
                    structs.get_mut(s).unwrap().push((key, ty, std::mem::take(&mut flatten)));
                }
            }
        }
        Schema { structs, enum_values: enum_values.into_iter().collect() }
    })
}

fn random_leaf(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<u64>()),
        4 => json!(rng.random::<f64>() * 1e6),
        5 => json!([]),
        6 => json!({}),
        7 => Value::String((0..rng.random_range(0..6)).map(|_| rng.random_range(' '..='~')).collect()),
        _ => Value::String("\u{0}\u{feff}é".into()),
    }
}

/// A value for Rust type `ty`: usually a valid one, sometimes not.
fn value_of(ty: &str, rng: &mut StdRng, depth: u32) -> Value {
    if rng.random_bool(0.08) {
        return random_leaf(rng);
    }
    if let Some(inner) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        return if rng.random_bool(0.2) { Value::Null } else { value_of(inner, rng, depth) };
    }
    if let Some(inner) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        let n = if depth > 3 { 0 } else { rng.random_range(0..3) };
        return Value::Array((0..n).map(|_| value_of(inner, rng, depth + 1)).collect());
    }
    if let Some(inner) = ty.strip_prefix("BTreeMap<String, ").and_then(|t| t.strip_suffix('>'))
        && inner != "String"
    {
        let n = if depth > 3 { 0 } else { rng.random_range(0..3) };
        return Value::Object((0..n).map(|i| (format!("key-{i}"), value_of(inner, rng, depth + 1))).collect());
    }
    let s = schema();
    match ty {
        "Uuid" => json!(uuid::Uuid::from_u128(rng.random()).to_string()),
        "String" => json!(["", "x", "demo", "1.33.5", "a b", "é", "-----BEGIN X-----"][rng.random_range(0..7)]),
        "i64" | "i32" | "u32" | "u16" | "u64" | "u8" | "usize" => {
            json!([0i64, 1, -1, 3, 65535, 65536, i64::MAX, i64::MIN, 4096][rng.random_range(0..9)])
        }
        "bool" => json!(rng.random::<bool>()),
        "Timestamp" => json!(
            [
                "2024-01-02T03:04:05Z",
                "2024-01-02T03:04:05.123456789+02:00",
                "2024-13-01T00:00:00Z",
                "0001-01-01T00:00:00Z"
            ][rng.random_range(0..4)]
        ),
        "Ipv4Addr" => json!(["198.51.100.7", "0.0.0.0", "256.1.1.1"][rng.random_range(0..3)]),
        "Ipv6Addr" => json!(["2001:db8::1", "::", "2001:db8::g"][rng.random_range(0..3)]),
        "Labels" | "BTreeMap<String, String>" => json!({"a": "b", "": "", "k8s.io/x": "y"}),
        _ if s.structs.contains_key(ty) => {
            if depth > 4 {
                json!({})
            } else {
                object_of(ty, rng, depth + 1)
            }
        }
        // A string enum (unknown values are kept) or a type this reader does not know.
        _ => json!(s.enum_values[rng.random_range(0..s.enum_values.len())]),
    }
}

/// A JSON object shaped like struct `name`, flattened fields inlined, with noise.
fn object_of(name: &str, rng: &mut StdRng, depth: u32) -> Value {
    let mut out = Map::new();
    fill(name, rng, depth, &mut out);
    for _ in 0..rng.random_range(0..3) {
        out.insert(format!("unknown-{}", rng.random_range(0..100)), random_leaf(rng));
    }
    Value::Object(out)
}

fn fill(name: &str, rng: &mut StdRng, depth: u32, out: &mut Map<String, Value>) {
    for (key, ty, flattened) in &schema().structs[name] {
        if *flattened {
            fill(ty, rng, depth, out);
        } else if !rng.random_bool(0.07) {
            out.insert(key.clone(), value_of(ty, rng, depth));
        }
    }
}

/// Parses `v` as `T`; when it parses, what it serializes to must parse back equal.
fn round_trip<T>(v: &Value, parsed: &mut usize) -> Result<(), TestCaseError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => {
            *parsed += 1;
            let json = serde_json::to_value(&t).map_err(|e| TestCaseError::fail(format!("serializing: {e}")))?;
            let again: T = serde_json::from_value(json.clone()).map_err(|e| {
                TestCaseError::fail(format!("{} does not read its own JSON {json}: {e}", std::any::type_name::<T>()))
            })?;
            prop_assert_eq!(again, t);
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

/// Every model type (aliases such as `UpdateSksCluster` are the same types), by struct name.
macro_rules! all_types {
    ($v:expr, $parsed:expr, $only:expr) => {{
        all_types!(@each $v, $parsed, $only,
            Ref, SshKeyRef, Manager, Zone, ZoneList, ScaleRequest, EvictRequest, PrivateNetworkAttachment, Instance,
            InstanceList, InstanceType, InstanceTypeList, CreateInstance, UpdateInstance, ScaleInstance,
            ResizeInstanceDisk, ResetInstance, InstancePoolSpec, CreateInstancePool, InstancePool, InstancePoolList,
            Healthcheck, BackendStatus, LoadBalancerServiceSpec, LoadBalancerService, LoadBalancerSpec, LoadBalancer,
            LoadBalancerList, Reference, Operation, SksOidc, SksAudit, SksClusterSpec, CreateSksCluster, SksCluster,
            SksClusterList, UpgradeSksCluster, SksClusterVersions, KubeconfigRequest, KubeconfigResponse,
            AuthorityCert, NodepoolTaint, KubeletImageGc, NvidiaMigProfiles, SksNodepoolSpec, CreateSksNodepool, SksNodepool,
            DeprecatedResource, ActiveTemplate, Labels, InstanceState, InstanceTypeFamily, InstanceTypeSize,
            InstancePoolState, LoadBalancerState, LoadBalancerServiceState, Protocol, Strategy, HealthcheckMode,
            HealthStatus, OperationState, OperationReason, SksClusterState, SksClusterLevel, SksCni,
            SksNodepoolState, TaintEffect, Authority, ManagerType, PublicIpAssignment);
    }};
    (@each $v:expr, $parsed:expr, $only:expr, $($t:ident),+) => {
        $(
            if $only.is_none_or(|o: &str| o == stringify!($t)) {
                let before = *$parsed.entry(stringify!($t)).or_insert(0);
                let mut n = before;
                round_trip::<model::$t>($v, &mut n)?;
                $parsed.insert(stringify!($t), n);
            }
        )+
    };
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "id|name|state|size|labels|spec|nodepools|instances|version|type|[a-z-]{0,10}",
                    any::<String>()
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_into_every_model_type(v in arbitrary_json()) {
        let mut parsed = BTreeMap::new();
        all_types!(&v, &mut parsed, None::<&str>);
    }

    #[test]
    fn schema_shaped_json_into_every_model_type(seed in any::<u64>(), which in any::<prop::sample::Index>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let names: Vec<&String> = schema().structs.keys().collect();
        let name = names[which.index(names.len())];
        let v = object_of(name, &mut rng, 0);
        // Fed to its own type (mostly parses) and to every other one (mostly does not).
        let mut parsed = BTreeMap::new();
        all_types!(&v, &mut parsed, None::<&str>);
    }
}

/// The schema-shaped generator really produces parseable objects of every struct,
/// so the round-trip property above is exercised for each of them.
#[test]
fn every_struct_gets_parsed_by_the_generator() {
    let mut parsed = BTreeMap::new();
    let mut run = || -> Result<(), TestCaseError> {
        for name in schema().structs.keys() {
            // The largest structs (instances, nodepools) parse in about one draw of 100.
            for seed in 0..2000 {
                let v = object_of(name, &mut StdRng::seed_from_u64(seed), 0);
                all_types!(&v, &mut parsed, Some(name.as_str()));
            }
        }
        Ok(())
    };
    run().unwrap();
    let never: Vec<&&str> = parsed.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k).collect();
    assert!(never.is_empty(), "never parsed: {never:?}");
    assert!(schema().structs.len() >= 45, "model sources not read: {:?}", schema().structs.keys());
}
