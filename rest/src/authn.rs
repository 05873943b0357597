//! Request authentication as k8s.io/apiserver's delegating authenticator does it: front-proxy headers vouched for by
//! a client certificate, then x509 client certificates, then bearer tokens through TokenReview, else anonymous.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use http::header::{AUTHORIZATION, HeaderMap, HeaderName};
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use super::tls::{self, CaPool};

/// The group every authenticated user is in.
const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of anonymous requests; an identity already in it is not made authenticated.
const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// Bound on remembered token reviews, so that a flood of distinct tokens cannot grow memory without limit.
const MAX_CACHED_TOKENS: usize = 10_000;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Request-header (front-proxy) settings, as published in kube-system/extension-apiserver-authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    pub client_ca_pem: String,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
    pub uid_headers: Vec<String>,
}

impl RequestHeaderConfig {
    /// Parses the ConfigMap's `data` (keys `requestheader-client-ca-file`, `requestheader-allowed-names`,
    /// `requestheader-username-headers`, `requestheader-group-headers`, `requestheader-extra-headers-prefix`,
    /// `requestheader-uid-headers`; the list values are JSON arrays of strings). None when the CA key is absent.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Option<Self>> {
        let Some(client_ca_pem) = data.get("requestheader-client-ca-file").filter(|ca| !ca.trim().is_empty()) else {
            return Ok(None);
        };
        tls::parse_pem_certs(client_ca_pem).context("requestheader-client-ca-file")?;
        let list = |key: &str| -> Result<Vec<String>> {
            // Like kube-apiserver, an empty value or JSON null is an empty list.
            match data.get(key).map(|value| value.trim()) {
                None | Some("") => Ok(Vec::new()),
                Some(value) => Ok(serde_json::from_str::<Option<Vec<String>>>(value)
                    .with_context(|| format!("{key} is not a JSON array of strings"))?
                    .unwrap_or_default()),
            }
        };
        Ok(Some(Self {
            client_ca_pem: client_ca_pem.clone(),
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: list("requestheader-username-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_prefixes: list("requestheader-extra-headers-prefix")?,
            uid_headers: list("requestheader-uid-headers")?,
        }))
    }
}

/// Which client certificates and request headers to trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthnConfig {
    pub client_ca_pem: Option<String>,
    pub request_header: Option<RequestHeaderConfig>,
}

/// A boxed `Send` future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks bearer tokens (TokenReview in production). Ok(None) = token not valid.
pub trait TokenReviewer: Send + Sync {
    /// Reviews `token`; an `Err` means the review could not be done (it is not cached).
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>>;
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("token review failed: {0}")]
    Unavailable(String),
}

/// Authenticates requests; configuration can be swapped while requests are served.
pub struct Authenticator {
    state: RwLock<Arc<State>>,
    trust: tls::ClientTrust,
    reviewer: Option<Arc<dyn TokenReviewer>>,
    tokens: TokenCache,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token cache stays out: its keys are token hashes and its values identities.
        f.debug_struct("Authenticator")
            .field("config", &self.state().config)
            .field("token_review", &self.reviewer.is_some())
            .field("token_cache_ttl", &self.tokens.ttl)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `config`, keeping `trust` (the handshake's client CAs) in step with it.
    pub fn new(
        config: AuthnConfig,
        trust: tls::ClientTrust,
        reviewer: Option<Arc<dyn TokenReviewer>>,
        token_cache_ttl: Duration,
    ) -> Result<Self> {
        let state = State::new(config)?;
        state.apply_trust(&trust)?;
        Ok(Self {
            state: RwLock::new(Arc::new(state)),
            trust,
            reviewer,
            tokens: TokenCache { ttl: token_cache_ttl, entries: Mutex::default() },
        })
    }

    /// Swaps the configuration (CA rotation, ConfigMap change) and updates `trust` to the union of both CAs.
    pub fn set_config(&self, config: AuthnConfig) -> Result<()> {
        let state = State::new(config)?;
        state.apply_trust(&self.trust)?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        Ok(())
    }

    /// Authenticates a request from the peer's chain (end entity first, as rustls gives it; empty if none) and headers.
    pub async fn authenticate(
        &self,
        peer: &[CertificateDer<'static>],
        headers: &http::HeaderMap,
    ) -> Result<Option<UserInfo>, AuthnError> {
        let state = self.state();
        // As in k8s' union authenticator, an untrusted certificate does not stop a valid token, but it makes the
        // request fail when nothing else authenticates it.
        let mut refusal = None;
        if !peer.is_empty() {
            match state.authenticate_certificate(peer, headers) {
                CertOutcome::User(user) => return Ok(Some(authenticated(user))),
                CertOutcome::Refused(reason) => return Err(AuthnError::Unauthorized(reason)),
                CertOutcome::Untrusted(reason) => refusal = Some(AuthnError::Unauthorized(reason)),
                CertOutcome::NoIdentity => {}
            }
        }
        if let (Some(token), Some(reviewer)) = (bearer_token(headers), &self.reviewer) {
            return match self.review(reviewer.as_ref(), token).await? {
                Some(user) => Ok(Some(authenticated(user))),
                None => Err(AuthnError::Unauthorized("invalid bearer token".to_owned())),
            };
        }
        refusal.map_or(Ok(None), Err)
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The reviewer's verdict on `token`, from the cache when it is fresh there.
    async fn review(&self, reviewer: &dyn TokenReviewer, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        // Only a hash is kept, so that the cache holds nothing that could be replayed.
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verdict) = self.tokens.get(&key, Instant::now()) {
            return Ok(verdict);
        }
        let verdict = reviewer.review(token).await.map_err(AuthnError::Unavailable)?;
        self.tokens.insert(key, verdict.clone(), Instant::now());
        Ok(verdict)
    }
}

/// A parsed configuration.
#[derive(Debug)]
struct State {
    config: AuthnConfig,
    client_ca: Option<CaPool>,
    front_proxy: Option<FrontProxy>,
}

/// The request-header authenticator, with its header names ready for lookups.
#[derive(Debug)]
struct FrontProxy {
    ca: CaPool,
    allowed_names: Vec<String>,
    username: Vec<HeaderName>,
    uid: Vec<HeaderName>,
    groups: Vec<HeaderName>,
    /// Lowercase, as `http` keeps header names.
    extra_prefixes: Vec<String>,
}

/// What the client certificate says about a request.
enum CertOutcome {
    User(UserInfo),
    /// A front proxy's certificate with a request it may not make: no other authenticator is tried.
    Refused(String),
    /// The certificate chains to no trusted CA.
    Untrusted(String),
    /// A trusted certificate that names nobody (empty CN).
    NoIdentity,
}

impl State {
    fn new(config: AuthnConfig) -> Result<Self> {
        let client_ca = match &config.client_ca_pem {
            Some(pem) => CaPool::from_pem_bundles(&[pem]).context("client CA")?,
            None => None,
        };
        let front_proxy = match &config.request_header {
            Some(request_header) => Some(FrontProxy::new(request_header)?),
            None => None,
        };
        Ok(Self { config, client_ca, front_proxy })
    }

    fn apply_trust(&self, trust: &tls::ClientTrust) -> Result<()> {
        let bundles: Vec<&str> = [
            self.config.client_ca_pem.as_deref(),
            self.config.request_header.as_ref().map(|rh| rh.client_ca_pem.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        trust.set(&bundles)
    }

    fn authenticate_certificate(&self, chain: &[CertificateDer<'_>], headers: &HeaderMap) -> CertOutcome {
        let mut errors = Vec::new();
        let mut name_refusal = None;
        if let Some(front_proxy) = &self.front_proxy {
            match front_proxy.ca.verify(chain) {
                Ok(()) => match front_proxy.authenticate(&chain[0], headers) {
                    Ok(user) => return CertOutcome::User(user),
                    // When one CA signs both kinds, a user's certificate must still work as such (k8s tries the
                    // x509 authenticator after the request-header one fails), so this waits for the client CA.
                    Err(FrontProxyError::NameNotAllowed(reason)) => name_refusal = Some(reason),
                    Err(FrontProxyError::BadRequest(reason)) => return CertOutcome::Refused(reason),
                },
                Err(err) => errors.push(format!("not signed by the front-proxy CA: {err}")),
            }
        }
        if let Some(client_ca) = &self.client_ca {
            match client_ca.verify(chain) {
                Ok(()) => {
                    return match certificate_user(&chain[0]) {
                        Ok(Some(user)) => CertOutcome::User(user),
                        Ok(None) => CertOutcome::NoIdentity,
                        Err(reason) => CertOutcome::Refused(reason),
                    };
                }
                Err(err) => errors.push(format!("not signed by the client CA: {err}")),
            }
        }
        if let Some(reason) = name_refusal {
            return CertOutcome::Refused(reason);
        }
        if errors.is_empty() {
            errors.push("no CA is trusted for client certificates".to_owned());
        }
        CertOutcome::Untrusted(format!("client certificate refused: {}", errors.join("; ")))
    }
}

/// Why a verified front-proxy certificate does not authenticate a request.
enum FrontProxyError {
    NameNotAllowed(String),
    BadRequest(String),
}

impl FrontProxy {
    fn new(config: &RequestHeaderConfig) -> Result<Self> {
        let ca = CaPool::from_pem_bundles(&[&config.client_ca_pem])
            .context("request-header client CA")?
            .context("request-header client CA is empty")?;
        // A configured name that is not a valid header name cannot be present in a request.
        let names = |names: &[String]| -> Vec<HeaderName> {
            names.iter().filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()).collect()
        };
        Ok(Self {
            ca,
            allowed_names: config.allowed_names.clone(),
            username: names(&config.username_headers),
            uid: names(&config.uid_headers),
            groups: names(&config.group_headers),
            extra_prefixes: config
                .extra_prefixes
                .iter()
                .map(|prefix| prefix.trim().to_ascii_lowercase())
                .filter(|prefix| !prefix.is_empty())
                .collect(),
        })
    }

    /// The identity a front proxy whose certificate verified asserts in `headers`.
    fn authenticate(&self, cert: &CertificateDer<'_>, headers: &HeaderMap) -> Result<UserInfo, FrontProxyError> {
        if !self.allowed_names.is_empty() {
            let name = common_name(cert).map_err(FrontProxyError::BadRequest)?.unwrap_or_default();
            if !self.allowed_names.contains(&name) {
                return Err(FrontProxyError::NameNotAllowed(format!(
                    "front-proxy certificate common name {name:?} is not an allowed name"
                )));
            }
        }
        let name = first_value(headers, &self.username)?
            .ok_or_else(|| FrontProxyError::BadRequest("front-proxy request without a user name".to_owned()))?;
        let uid = first_value(headers, &self.uid)?;
        let mut groups = Vec::new();
        for header in &self.groups {
            for value in headers.get_all(header) {
                let value = header_text(header.as_str(), value.as_bytes())?;
                if !value.is_empty() {
                    groups.push(value.to_owned());
                }
            }
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (header, value) in headers {
            let Some(rest) =
                self.extra_prefixes.iter().find_map(|prefix| header.as_str().strip_prefix(prefix.as_str()))
            else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            // Keys such as authentication.kubernetes.io/credential-id reach us percent-encoded; like Go's
            // url.PathUnescape, a malformed escape leaves the key as it is.
            let key = percent_decode(rest).unwrap_or_else(|| rest.to_owned());
            extra.entry(key).or_default().push(header_text(header.as_str(), value.as_bytes())?.to_owned());
        }
        Ok(UserInfo { name, uid, groups, extra })
    }
}

/// The first non-empty value of the first of `names` that has one.
fn first_value(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, FrontProxyError> {
    for name in names {
        if let Some(value) = headers.get(name) {
            let value = header_text(name.as_str(), value.as_bytes())?;
            if !value.is_empty() {
                return Ok(Some(value.to_owned()));
            }
        }
    }
    Ok(None)
}

fn header_text<'a>(name: &str, value: &'a [u8]) -> Result<&'a str, FrontProxyError> {
    // Lossy decoding could make two different names one identity; refuse instead.
    std::str::from_utf8(value).map_err(|_| FrontProxyError::BadRequest(format!("header {name} is not valid UTF-8")))
}

/// Go's url.PathUnescape: `%XX` escapes decoded, `+` kept; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = char::from(*bytes.get(i + 1)?).to_digit(16)?;
            let low = char::from(*bytes.get(i + 2)?).to_digit(16)?;
            decoded.push(u8::try_from((high << 4) | low).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The subject's common name; Go keeps the last CN when there are several, and so does this.
fn common_name(cert: &CertificateDer<'_>) -> Result<Option<String>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|err| format!("bad client certificate: {err}"))?;
    let name = parsed.subject().iter_common_name().last().map(|cn| cn.as_str().map(str::to_owned)).transpose();
    name.map_err(|err| format!("unreadable client certificate common name: {err}"))
}

/// The identity of an x509 client certificate: CN as user, each O as a group; `None` without a CN.
fn certificate_user(cert: &CertificateDer<'_>) -> Result<Option<UserInfo>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|err| format!("bad client certificate: {err}"))?;
    let subject = parsed.subject();
    let name = match subject.iter_common_name().last() {
        Some(cn) => cn.as_str().map_err(|err| format!("unreadable client certificate common name: {err}"))?,
        None => return Ok(None),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let groups = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("unreadable client certificate organization: {err}"))?;
    Ok(Some(UserInfo { name: name.to_owned(), uid: None, groups, extra: BTreeMap::new() }))
}

/// `user` with `system:authenticated` added, unless it already has it or is explicitly unauthenticated.
fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|group| group == AUTHENTICATED_GROUP || group == UNAUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    user
}

/// The token of an `Authorization: Bearer <token>` header, parsed as k8s' bearertoken authenticator does.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Token review verdicts by SHA-256 of the token, valid or not, each for `ttl`.
struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], CachedVerdict>>,
}

struct CachedVerdict {
    expires: Instant,
    user: Option<UserInfo>,
}

impl TokenCache {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Option<UserInfo>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|entry| now < entry.expires).map(|entry| entry.user.clone())
    }

    fn insert(&self, key: [u8; 32], user: Option<UserInfo>, now: Instant) {
        let Some(expires) = now.checked_add(self.ttl).filter(|_| !self.ttl.is_zero()) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_TOKENS && !entries.contains_key(&key) {
            entries.retain(|_, entry| now < entry.expires);
            if entries.len() >= MAX_CACHED_TOKENS {
                return;
            }
        }
        entries.insert(key, CachedVerdict { expires, user });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::HeaderValue;
    use rustls_pki_types::pem::PemObject as _;
    use sks_pki::CertificateAuthority;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    struct Fixture {
        client_ca: CertificateAuthority,
        proxy_ca: CertificateAuthority,
        stranger_ca: CertificateAuthority,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                client_ca: CertificateAuthority::generate("client-ca").unwrap(),
                proxy_ca: CertificateAuthority::generate("front-proxy-ca").unwrap(),
                stranger_ca: CertificateAuthority::generate("stranger-ca").unwrap(),
            }
        }

        fn config(&self) -> AuthnConfig {
            AuthnConfig {
                client_ca_pem: Some(self.client_ca.cert_pem.clone()),
                request_header: Some(RequestHeaderConfig {
                    client_ca_pem: self.proxy_ca.cert_pem.clone(),
                    allowed_names: vec!["front-proxy-client".to_owned()],
                    username_headers: vec!["X-Remote-User".to_owned()],
                    group_headers: vec!["X-Remote-Group".to_owned()],
                    extra_prefixes: vec!["X-Remote-Extra-".to_owned()],
                    uid_headers: vec![],
                }),
            }
        }

        fn authenticator(&self, reviewer: Option<Arc<dyn TokenReviewer>>, ttl: Duration) -> Authenticator {
            Authenticator::new(self.config(), tls::ClientTrust::default(), reviewer, ttl).unwrap()
        }
    }

    fn chain(ca: &CertificateAuthority, user: &str, groups: &[&str]) -> Vec<CertificateDer<'static>> {
        let groups: Vec<String> = groups.iter().map(|group| (*group).to_owned()).collect();
        let issued = ca.issue_client(user, &groups, DAY).unwrap();
        vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()]
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn proxy_headers() -> HeaderMap {
        headers(&[
            ("X-Remote-User", "alice"),
            ("x-remote-group", "devs"),
            ("X-Remote-Group", "ops"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            ("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id", "X509SHA256=abc"),
        ])
    }

    #[tokio::test]
    async fn front_proxy_headers_give_the_identity() {
        let fixture = Fixture::new();
        let authn = fixture.authenticator(None, DAY);
        let proxy = chain(&fixture.proxy_ca, "front-proxy-client", &["ignored-org"]);
        let user = authn.authenticate(&proxy, &proxy_headers()).await.unwrap().unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.uid, None);
        assert_eq!(user.groups, ["devs", "ops", AUTHENTICATED_GROUP]);
        assert_eq!(
            user.extra,
            BTreeMap::from([
                ("authentication.kubernetes.io/credential-id".to_owned(), vec!["X509SHA256=abc".to_owned()]),
                ("scopes".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ])
        );
    }

    #[tokio::test]
    async fn front_proxy_uid_and_empty_allowed_names() {
        let fixture = Fixture::new();
        let mut config = fixture.config();
        let request_header = config.request_header.as_mut().unwrap();
        request_header.allowed_names.clear();
        request_header.uid_headers = vec!["X-Remote-Uid".to_owned()];
        request_header.username_headers = vec!["X-First".to_owned(), "X-Remote-User".to_owned()];
        let authn = Authenticator::new(config, tls::ClientTrust::default(), None, DAY).unwrap();
        let any_name = chain(&fixture.proxy_ca, "whoever", &[]);
        let mut request = headers(&[("X-First", ""), ("X-Remote-User", "bob"), ("X-Remote-Uid", "42")]);
        let user = authn.authenticate(&any_name, &request).await.unwrap().unwrap();
        assert_eq!((user.name.as_str(), user.uid.as_deref()), ("bob", Some("42")));
        assert_eq!(user.groups, [AUTHENTICATED_GROUP]);

        // A front proxy that names nobody is refused rather than passed on to other authenticators.
        request.remove("X-Remote-User");
        assert!(matches!(authn.authenticate(&any_name, &request).await, Err(AuthnError::Unauthorized(_))));
    }

    #[tokio::test]
    async fn front_proxy_headers_are_ignored_without_a_front_proxy_certificate() {
        let fixture = Fixture::new();
        let authn = fixture.authenticator(None, DAY);
        assert_eq!(authn.authenticate(&[], &proxy_headers()).await, Ok(None));

        // A client-CA certificate is an x509 user, whatever the headers say.
        let carol = chain(&fixture.client_ca, "front-proxy-client", &["team"]);
        let user = authn.authenticate(&carol, &proxy_headers()).await.unwrap().unwrap();
        assert_eq!(user.name, "front-proxy-client");
        assert_eq!(user.groups, ["team", AUTHENTICATED_GROUP]);
        assert!(user.extra.is_empty());

        let stranger = chain(&fixture.stranger_ca, "front-proxy-client", &[]);
        assert!(matches!(authn.authenticate(&stranger, &proxy_headers()).await, Err(AuthnError::Unauthorized(_))));
    }

    #[tokio::test]
    async fn front_proxy_name_must_be_allowed() {
        let fixture = Fixture::new();
        let authn = fixture.authenticator(None, DAY);
        let intruder = chain(&fixture.proxy_ca, "not-the-proxy", &[]);
        assert!(matches!(authn.authenticate(&intruder, &proxy_headers()).await, Err(AuthnError::Unauthorized(_))));

        // When one CA signs both, a user certificate is still a user certificate.
        let mut config = fixture.config();
        config.client_ca_pem = Some(fixture.proxy_ca.cert_pem.clone());
        authn.set_config(config).unwrap();
        let user = authn.authenticate(&intruder, &proxy_headers()).await.unwrap().unwrap();
        assert_eq!(user.name, "not-the-proxy");
    }

    #[tokio::test]
    async fn client_certificates_give_cn_and_organizations() {
        let fixture = Fixture::new();
        let authn = fixture.authenticator(None, DAY);
        let admin = chain(&fixture.client_ca, "kubernetes-admin", &["system:masters", "ops"]);
        let user = authn.authenticate(&admin, &HeaderMap::new()).await.unwrap().unwrap();
        assert_eq!(
            user,
            UserInfo {
                name: "kubernetes-admin".to_owned(),
                uid: None,
                groups: vec!["system:masters".to_owned(), "ops".to_owned(), AUTHENTICATED_GROUP.to_owned()],
                extra: BTreeMap::new(),
            }
        );

        // Rotation: the old CA is no longer trusted, by the authenticator nor by the handshake.
        let trust = tls::ClientTrust::default();
        let authn = Authenticator::new(fixture.config(), trust.clone(), None, DAY).unwrap();
        assert!(trust.current().unwrap().verify(&admin).is_ok());
        let mut rotated = fixture.config();
        rotated.client_ca_pem = Some(fixture.stranger_ca.cert_pem.clone());
        authn.set_config(rotated).unwrap();
        assert!(trust.current().unwrap().verify(&admin).is_err());
        assert!(matches!(authn.authenticate(&admin, &HeaderMap::new()).await, Err(AuthnError::Unauthorized(_))));

        // A bad configuration is refused and the previous one stays.
        let mut broken = fixture.config();
        broken.client_ca_pem = Some("garbage".to_owned());
        assert!(authn.set_config(broken).is_err());
        let other = chain(&fixture.stranger_ca, "dave", &[]);
        assert_eq!(authn.authenticate(&other, &HeaderMap::new()).await.unwrap().unwrap().name, "dave");
    }

    /// Accepts `good-token`, counting calls.
    struct FakeReviewer {
        calls: AtomicUsize,
    }

    impl TokenReviewer for FakeReviewer {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "good-token" => Ok(Some(UserInfo {
                        name: "system:serviceaccount:default:builder".to_owned(),
                        uid: Some("u-1".to_owned()),
                        groups: vec!["system:serviceaccounts".to_owned()],
                        extra: BTreeMap::new(),
                    })),
                    "broken-token" => Err("apiserver unreachable".to_owned()),
                    _ => Ok(None),
                }
            })
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        headers(&[("Authorization", &format!("Bearer {token}"))])
    }

    #[tokio::test]
    async fn bearer_tokens_are_reviewed_once_per_ttl() {
        let fixture = Fixture::new();
        let reviewer = Arc::new(FakeReviewer { calls: AtomicUsize::new(0) });
        let authn = fixture.authenticator(Some(reviewer.clone()), DAY);
        for _ in 0..2 {
            let user = authn.authenticate(&[], &bearer("good-token")).await.unwrap().unwrap();
            assert_eq!(user.groups, ["system:serviceaccounts", AUTHENTICATED_GROUP]);
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            let refused = authn.authenticate(&[], &bearer("bad-token")).await;
            assert_eq!(refused, Err(AuthnError::Unauthorized("invalid bearer token".to_owned())));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 2);
        // Failed reviews are not remembered.
        for _ in 0..2 {
            let failed = authn.authenticate(&[], &bearer("broken-token")).await;
            assert!(matches!(failed, Err(AuthnError::Unavailable(_))));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 4);
        // Other schemes and empty tokens are not bearer tokens.
        assert_eq!(authn.authenticate(&[], &headers(&[("Authorization", "Basic Zm9vOmJhcg==")])).await, Ok(None));
        assert_eq!(authn.authenticate(&[], &headers(&[("Authorization", "Bearer ")])).await, Ok(None));
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 4);

        // A zero TTL caches nothing.
        let uncached = fixture.authenticator(Some(reviewer.clone()), Duration::ZERO);
        uncached.authenticate(&[], &bearer("good-token")).await.unwrap().unwrap();
        uncached.authenticate(&[], &bearer("good-token")).await.unwrap().unwrap();
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_valid_token_overrides_an_untrusted_certificate() {
        let fixture = Fixture::new();
        let reviewer = Arc::new(FakeReviewer { calls: AtomicUsize::new(0) });
        let authn = fixture.authenticator(Some(reviewer), DAY);
        let stranger = chain(&fixture.stranger_ca, "mallory", &[]);
        let user = authn.authenticate(&stranger, &bearer("good-token")).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert!(matches!(authn.authenticate(&stranger, &bearer("bad-token")).await, Err(AuthnError::Unauthorized(_))));
    }

    #[test]
    fn token_cache_expires_entries() {
        let cache = TokenCache { ttl: Duration::from_secs(10), entries: Mutex::default() };
        let start = Instant::now();
        let key = [7; 32];
        cache.insert(key, None, start);
        assert_eq!(cache.get(&key, start + Duration::from_secs(9)), Some(None));
        assert_eq!(cache.get(&key, start + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&[8; 32], start), None);
    }

    #[test]
    fn request_header_config_from_configmap() {
        let ca = CertificateAuthority::generate("front-proxy-ca").unwrap();
        let data = BTreeMap::from([
            ("client-ca-file".to_owned(), "ignored".to_owned()),
            ("requestheader-client-ca-file".to_owned(), ca.cert_pem.clone()),
            ("requestheader-allowed-names".to_owned(), r#"["front-proxy-client"]"#.to_owned()),
            ("requestheader-username-headers".to_owned(), r#"["X-Remote-User"]"#.to_owned()),
            ("requestheader-group-headers".to_owned(), r#"["X-Remote-Group"]"#.to_owned()),
            ("requestheader-extra-headers-prefix".to_owned(), r#"["X-Remote-Extra-"]"#.to_owned()),
            ("requestheader-uid-headers".to_owned(), "null".to_owned()),
        ]);
        let config = RequestHeaderConfig::from_configmap_data(&data).unwrap().unwrap();
        assert_eq!(
            config,
            RequestHeaderConfig {
                client_ca_pem: ca.cert_pem.clone(),
                allowed_names: vec!["front-proxy-client".to_owned()],
                username_headers: vec!["X-Remote-User".to_owned()],
                group_headers: vec!["X-Remote-Group".to_owned()],
                extra_prefixes: vec!["X-Remote-Extra-".to_owned()],
                uid_headers: vec![],
            }
        );

        let mut partial = data.clone();
        partial.remove("requestheader-allowed-names");
        partial.insert("requestheader-group-headers".to_owned(), String::new());
        let config = RequestHeaderConfig::from_configmap_data(&partial).unwrap().unwrap();
        assert!(config.allowed_names.is_empty() && config.group_headers.is_empty());

        let mut bad = data.clone();
        bad.insert("requestheader-allowed-names".to_owned(), "front-proxy-client".to_owned());
        assert!(RequestHeaderConfig::from_configmap_data(&bad).is_err());
        bad.insert("requestheader-allowed-names".to_owned(), "[1]".to_owned());
        assert!(RequestHeaderConfig::from_configmap_data(&bad).is_err());

        let mut no_ca = data;
        no_ca.remove("requestheader-client-ca-file");
        assert_eq!(RequestHeaderConfig::from_configmap_data(&no_ca).unwrap(), None);
    }

    #[test]
    fn percent_decoding_follows_path_unescape() {
        assert_eq!(percent_decode("a%2fb%2Fc+d").as_deref(), Some("a/b/c+d"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
