//! Who may call: the EXO2-HMAC-SHA256 signature of every request (but the
//! unsigned `GET /zone`), every signable query parameter covered by it, and no
//! signed write accepted twice.
//!
//! **Replays.** A signature covers the method, path, body, signed query values
//! and an expiry in whole seconds, and nothing else: whoever captures a signed
//! request can send it again until it expires. The zone remembers the
//! signature of every write (any method but GET and HEAD) until its expiry and
//! refuses a second one with 403. Reads are not remembered: a replayed read
//! changes nothing, and a client polling an operation several times a second
//! legitimately sends the same signed GET again within one second (the
//! protocol has no nonce to tell them apart). The orchestrator client never
//! signs the same write twice (it takes the next expiry second instead).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use orchestrator::signing;

use crate::app::{ApiError, ApiResult};

/// Most signatures of writes remembered at once; past this (after forgetting
/// the expired ones) writes are refused with 503 until some expire.
const MAX_REMEMBERED: usize = 1 << 20;

/// The signatures of the writes accepted and not yet expired.
pub struct ReplayGuard {
    enabled: AtomicBool,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Signature (the raw HMAC) -> its expiry.
    expiries: HashMap<[u8; 32], i64>,
    /// Size at which expired entries are next swept.
    sweep_at: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard { enabled: AtomicBool::new(true), seen: Mutex::default() }
    }
}

impl ReplayGuard {
    /// Turns replay protection on or off (`--reject-replays`).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Records the signature of an accepted write; an error if it was seen before.
    fn admit(&self, auth: &signing::Authorization, now: i64) -> ApiResult<()> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(raw) = <[u8; 32]>::try_from(
            base64::engine::general_purpose::STANDARD.decode(&auth.signature).unwrap_or_default().as_slice(),
        ) else {
            // A verified signature is always a 32-byte HMAC; anything else was refused before.
            return Err(ApiError::forbidden("invalid signature"));
        };
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.expiries.len() >= seen.sweep_at {
            seen.expiries.retain(|_, expires| *expires >= now);
            seen.sweep_at = (seen.expiries.len() * 2).max(1024);
        }
        if let Some(&expires) = seen.expiries.get(&raw)
            && expires >= now
        {
            return Err(ApiError::forbidden(format!(
                "replayed request: this signature (key {}, expires {expires}) was already used; sign every request anew",
                auth.credential
            )));
        }
        if seen.expiries.len() >= MAX_REMEMBERED {
            return Err(ApiError {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: format!("too many signed writes in flight (over {MAX_REMEMBERED} unexpired); retry later"),
            });
        }
        seen.expiries.insert(raw, auth.expires);
        Ok(())
    }
}

/// The parts of a request the check reads.
pub struct Signed<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as received (escaped), including `/v2` or the zone prefix.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// The `Authorization` header, if any (and if it is text).
    pub authorization: Option<&'a str>,
    /// Raw body.
    pub body: &'a [u8],
}

/// Checks a request's signature against `keys` at `now` (UNIX seconds), and
/// that a write was not accepted before. `unsigned_ok`: the operation may come
/// unsigned (`GET /zone`). Every refusal is a 403 (503 when the replay memory
/// is full) whose message says why.
pub fn check(
    keys: &BTreeMap<String, String>,
    replays: &ReplayGuard,
    req: &Signed<'_>,
    unsigned_ok: bool,
    now: i64,
) -> ApiResult<()> {
    let Some(header) = req.authorization else {
        if unsigned_ok {
            return Ok(());
        }
        return Err(ApiError::forbidden("missing Authorization header: requests must be signed with EXO2-HMAC-SHA256"));
    };
    let auth = signing::parse_authorization(header).map_err(|e| ApiError::forbidden(e.to_string()))?;
    let Some(secret) = keys.get(&auth.credential) else {
        return Err(ApiError::forbidden(format!("unknown API key {}", auth.credential)));
    };
    let signed = signing::Request { method: req.method, path: req.path, query: req.query, body: req.body };
    signing::verify(&auth, secret, &signed, now)
        .map_err(|e| ApiError::forbidden(format!("invalid signature for key {}: {e}", auth.credential)))?;
    // Parameters a signer would have signed but did not could have been added by anyone.
    if let Some((name, _)) = signing::signed_query_params(req.query)
        .into_iter()
        .find(|(name, _)| !auth.signed_query_args.iter().any(|s| s == name))
    {
        return Err(ApiError::forbidden(format!(
            "query parameter {name:?} is not covered by the signature (signed-query-args lists {:?})",
            auth.signed_query_args
        )));
    }
    if !matches!(req.method, "GET" | "HEAD") {
        replays.admit(&auth, now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn keys() -> BTreeMap<String, String> {
        BTreeMap::from([("EXOkey".to_owned(), "s3cret".to_owned())])
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn header(method: &str, path: &str, query: &[(String, String)], body: &[u8], expires: i64) -> String {
        signing::authorization("EXOkey", "s3cret", &signing::Request { method, path, query, body }, expires)
    }

    #[test]
    fn a_write_is_accepted_once() {
        let (keys, guard) = (keys(), ReplayGuard::default());
        let auth = header("POST", "/v2/load-balancer", &[], b"{}", NOW + 600);
        let req =
            Signed { method: "POST", path: "/v2/load-balancer", query: &[], authorization: Some(&auth), body: b"{}" };
        assert_eq!(check(&keys, &guard, &req, false, NOW), Ok(()));
        let e = check(&keys, &guard, &req, false, NOW + 1).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(
            e.message.starts_with("replayed request: this signature (key EXOkey, expires 1700000600)"),
            "{}",
            e.message
        );
        // A fresh signature of the same write is fine; so is a repeated read.
        let again = header("POST", "/v2/load-balancer", &[], b"{}", NOW + 601);
        assert_eq!(check(&keys, &guard, &Signed { authorization: Some(&again), ..req }, false, NOW + 1), Ok(()));
        let read = header("GET", "/v2/load-balancer", &[], b"", NOW + 600);
        let get =
            Signed { method: "GET", path: "/v2/load-balancer", query: &[], authorization: Some(&read), body: b"" };
        assert_eq!((check(&keys, &guard, &get, false, NOW), check(&keys, &guard, &get, false, NOW)), (Ok(()), Ok(())));
        // With replay protection off, the replay passes.
        guard.set_enabled(false);
        assert_eq!(check(&keys, &guard, &req, false, NOW + 2), Ok(()));
    }

    #[test]
    fn expired_forged_and_unsigned_requests_are_refused() {
        let (keys, guard) = (keys(), ReplayGuard::default());
        let auth = header("DELETE", "/v2/instance/x", &[], b"", NOW - 1);
        let req =
            Signed { method: "DELETE", path: "/v2/instance/x", query: &[], authorization: Some(&auth), body: b"" };
        let e = check(&keys, &guard, &req, false, NOW).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (403, "invalid signature for key EXOkey: signature expired at 1699999999")
        );
        let e = check(&keys, &guard, &Signed { authorization: None, ..req }, false, NOW).unwrap_err();
        assert!(e.message.starts_with("missing Authorization header"), "{}", e.message);
        assert_eq!(check(&keys, &guard, &Signed { authorization: None, ..req }, true, NOW), Ok(()));
        // A parameter added to a signed request is refused, even though the signature still matches.
        let auth = header("GET", "/v2/instance", &[], b"", NOW + 600);
        let extra = q(&[("manager-id", "x")]);
        let e = check(
            &keys,
            &guard,
            &Signed { method: "GET", path: "/v2/instance", query: &extra, authorization: Some(&auth), body: b"" },
            false,
            NOW,
        )
        .unwrap_err();
        assert!(e.message.contains("query parameter \"manager-id\" is not covered by the signature"), "{}", e.message);
        // Empty and repeated parameters are never signed, so they need not be.
        let unsigned = q(&[("a", ""), ("b", "1"), ("b", "2")]);
        let r = Signed { method: "GET", path: "/v2/instance", query: &unsigned, authorization: Some(&auth), body: b"" };
        assert_eq!(check(&keys, &guard, &r, false, NOW), Ok(()));
    }

    #[test]
    fn expired_signatures_are_forgotten() {
        let (keys, guard) = (keys(), ReplayGuard::default());
        for i in 0..5000i64 {
            let body = i.to_string();
            let auth = header("PUT", "/v2/x", &[], body.as_bytes(), NOW + i + 1);
            let req =
                Signed { method: "PUT", path: "/v2/x", query: &[], authorization: Some(&auth), body: body.as_bytes() };
            assert_eq!(check(&keys, &guard, &req, false, NOW + i), Ok(()));
        }
        let seen = guard.seen.lock().unwrap();
        assert!(seen.expiries.len() < 2100, "{} remembered", seen.expiries.len());
    }

    fn query() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(
            (prop_oneof!["[a-z-]{0,6}", any::<String>()], prop_oneof!["[a-z0-9]{0,4}", any::<String>()]),
            0..4,
        )
    }

    proptest! {
        // The zone's verifier on arbitrary headers, bodies, queries and expiries: no panic, every
        // refusal a 403 (or 503) with a message, and only a correctly signed, unexpired, first-seen
        // request passes. Cases: PROPTEST_CASES (default 256).
        #[test]
        fn arbitrary_requests(
            method in prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), Just("PUT".to_owned()), "[A-Z]{0,6}"],
            path in prop_oneof!["/v2/[a-z/-]{0,20}", any::<String>()],
            query in query(),
            body in prop::collection::vec(any::<u8>(), 0..48),
            forged in prop_oneof![
                Just(None),
                "EXO2-HMAC-SHA256 credential=EXOkey(,signed-query-args=[a-z;-]{0,12})?,expires=-?[0-9]{1,20},signature=[A-Za-z0-9+/=]{0,48}".prop_map(Some),
                any::<String>().prop_map(Some),
            ],
            expires_in in -100i64..4000,
            honest in any::<bool>(),
            unsigned_ok in any::<bool>(),
        ) {
            let (keys, guard) = (keys(), ReplayGuard::default());
            let signed_header = header(&method, &path, &query, &body, NOW + expires_in);
            let authorization = if honest { Some(signed_header) } else { forged };
            let req = Signed { method: &method, path: &path, query: &query, authorization: authorization.as_deref(), body: &body };
            let first = check(&keys, &guard, &req, unsigned_ok, NOW);
            match &first {
                Ok(()) => {
                    prop_assert!(authorization.is_none() && unsigned_ok || honest);
                    if honest {
                        prop_assert!((0..=signing::MAX_EXPIRES_AHEAD_SECS).contains(&expires_in));
                    }
                }
                Err(e) => {
                    prop_assert!(e.status == 403 || e.status == 503, "{e:?}");
                    prop_assert!(!e.message.is_empty());
                    if honest {
                        prop_assert!(!(0..=signing::MAX_EXPIRES_AHEAD_SECS).contains(&expires_in), "{e:?}");
                    }
                }
            }
            // The same request again: a write that passed is now a replay, a read passes again.
            let second = check(&keys, &guard, &req, unsigned_ok, NOW);
            if first.is_ok() && authorization.is_some() {
                if matches!(method.as_str(), "GET" | "HEAD") {
                    prop_assert_eq!(second, Ok(()));
                } else {
                    prop_assert!(second.unwrap_err().message.starts_with("replayed request"));
                }
            }
        }
    }
}
