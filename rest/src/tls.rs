//! HTTPS serving: a rustls configuration whose serving certificate follows its files on disk and whose trusted
//! client CAs can be swapped while the server runs, as k8s.io/apiserver's dynamic certificate controllers do.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, ensure};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// How often a handshake may look at the serving certificate files: a `stat` per handshake would be wasted work.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CAs client certificates may chain to; swapped at run time.
#[derive(Clone, Default)]
pub struct ClientTrust {
    current: Arc<RwLock<Option<CaPool>>>,
}

impl fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTrust").field("current", &self.current()).finish()
    }
}

impl ClientTrust {
    /// Replaces the trusted CA set (PEM bundles; several certs per bundle allowed). Errors if a bundle does not parse.
    pub fn set(&self, cas: &[&str]) -> Result<()> {
        let pool = CaPool::from_pem_bundles(cas)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = pool;
        Ok(())
    }

    /// The CAs trusted now; `None` when there are none.
    pub(crate) fn current(&self) -> Option<CaPool> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A rustls server config: TLS 1.2+, ALPN h2/http1.1, serving cert reloaded from `files` when they change,
/// optional client certificates verified against `trust` (current value at each handshake).
pub fn server_config(files: ServingCertFiles, trust: ClientTrust) -> Result<Arc<ServerConfig>> {
    build_server_config(files, trust, RELOAD_CHECK_INTERVAL)
}

/// `server_config` with the interval between two looks at the certificate files, so tests need not wait a second.
fn build_server_config(files: ServingCertFiles, trust: ClientTrust, interval: Duration) -> Result<Arc<ServerConfig>> {
    let resolver = ReloadingCert::new(files, interval)?;
    let verifier = DynamicClientVerifier { trust, hints: HintList::default() };
    let mut config = ServerConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("selecting TLS versions")?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The ring provider, explicitly: a process-wide default may be unset or be another provider.
pub(crate) fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The certificates of a PEM bundle; an error if it has none or a block does not parse.
pub(crate) fn parse_pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing a PEM certificate bundle")?;
    ensure!(!certs.is_empty(), "the PEM bundle holds no certificate");
    Ok(certs)
}

/// How long a successful chain verification is reused: every request on a
/// connection carries the same chain, and signature checks dominate the cost
/// of small requests.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most verified chains remembered before the cache is emptied.
const VERIFIED_MAX: usize = 10_000;

/// A set of CAs that client certificates are checked against (chain, validity, client-auth usage).
#[derive(Clone, Debug)]
pub(crate) struct CaPool {
    verifier: Arc<dyn ClientCertVerifier>,
    /// Chains (by SHA-256) that verified, and when. A CA change builds a new pool, so entries never outlive their
    /// CAs; a certificate that expires is accepted at most `VERIFIED_TTL` longer.
    verified: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>>,
}

impl CaPool {
    /// The union of `bundles`; `None` when there is no bundle.
    pub(crate) fn from_pem_bundles(bundles: &[&str]) -> Result<Option<Self>> {
        let mut roots = RootCertStore::empty();
        for (index, bundle) in bundles.iter().enumerate() {
            let certs = parse_pem_certs(bundle).with_context(|| format!("CA bundle #{index}"))?;
            for cert in certs {
                roots.add(cert).with_context(|| format!("CA bundle #{index}: not a usable CA certificate"))?;
            }
        }
        if roots.is_empty() {
            return Ok(None);
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider().clone())
            .allow_unauthenticated()
            .build()
            .context("building the client certificate verifier")?;
        Ok(Some(Self { verifier, verified: Arc::default() }))
    }

    /// Whether `chain` (end entity first) chains to one of these CAs and is usable for client authentication now.
    pub(crate) fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for cert in chain {
            hasher.update((cert.len() as u64).to_be_bytes());
            hasher.update(cert.as_ref());
        }
        let key: [u8; 32] = hasher.finalize().into();
        let now = std::time::Instant::now();
        let mut verified = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.get(&key).is_some_and(|at| now.duration_since(*at) < VERIFIED_TTL) {
            return Ok(());
        }
        drop(verified);
        // Failures are never cached: a fixed clock or a new CA must be able to change the answer.
        self.verifier.verify_client_cert(end_entity, intermediates, UnixTime::now())?;
        verified = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key, now);
        Ok(())
    }
}

/// Verifies client certificates against whatever `trust` holds at the time of each handshake.
#[derive(Debug)]
struct DynamicClientVerifier {
    trust: ClientTrust,
    hints: HintList,
}

impl ClientCertVerifier for DynamicClientVerifier {
    fn offer_client_auth(&self) -> bool {
        // Without any CA every certificate would be refused, so asking for one would only break clients that have
        // one but could still use a bearer token.
        self.trust.current().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match self.trust.current() {
            Some(pool) => self.hints.intern(pool.verifier.root_hint_subjects()),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // As k8s.io/apiserver (tls.RequestClientCert): the chain is judged per
        // request by the authenticator, so an untrusted certificate gets a 401
        // Status rather than a failed handshake. The handshake signatures below
        // still prove the client holds the certificate's key.
        let _ = (end_entity, intermediates, now);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Every distinct list of CA names handed out as hints, kept for as long as the verifier lives.
///
/// rustls borrows the hints from the verifier for the whole handshake, but the trusted CAs live behind a lock and
/// may be replaced meanwhile; an append-only list of write-once cells gives out such borrows safely. It grows only
/// when the set of CA names changes, which happens a handful of times in a server's life.
#[derive(Debug, Default)]
struct HintList {
    hints: OnceLock<Vec<DistinguishedName>>,
    next: OnceLock<Box<HintList>>,
}

impl HintList {
    /// A copy of `current` that lives as long as `self`.
    fn intern(&self, current: &[DistinguishedName]) -> &[DistinguishedName] {
        let mut node = self;
        loop {
            let hints = node.hints.get_or_init(|| current.to_vec());
            if hints.len() == current.len() && hints.iter().zip(current).all(|(a, b)| a.as_ref() == b.as_ref()) {
                return hints;
            }
            node = node.next.get_or_init(Box::default);
        }
    }
}

/// What identifies a version of a file without reading it.
type FileStamp = (Option<SystemTime>, u64);

/// The serving certificate, read again when its files change.
struct ReloadingCert {
    files: ServingCertFiles,
    interval: Duration,
    state: Mutex<ServingState>,
}

struct ServingState {
    checked_at: Instant,
    stamps: Option<[FileStamp; 2]>,
    current: Arc<CertifiedKey>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("ReloadingCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn new(files: ServingCertFiles, interval: Duration) -> Result<Self> {
        // Stamps are taken before reading, so that a change during the read is seen at the next check.
        let stamps = file_stamps(&files).ok();
        let current = load_serving_cert(&files)?;
        Ok(Self { files, interval, state: Mutex::new(ServingState { checked_at: Instant::now(), stamps, current }) })
    }

    /// The current certificate, after reloading it if the files changed since the last look.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked_at.elapsed() >= self.interval {
            state.checked_at = Instant::now();
            self.reload_if_changed(&mut state);
        }
        state.current.clone()
    }

    fn reload_if_changed(&self, state: &mut ServingState) {
        let stamps = match file_stamps(&self.files) {
            Ok(stamps) => Some(stamps),
            Err(err) => {
                if state.stamps.is_some() {
                    tracing::warn!(
                        cert = %self.files.cert.display(),
                        key = %self.files.key.display(),
                        error = %err,
                        "serving certificate files unreadable; keeping the current certificate"
                    );
                }
                None
            }
        };
        if stamps.is_none() || stamps == state.stamps {
            state.stamps = stamps;
            return;
        }
        // Remembered even if loading fails, so that a broken file is reported once rather than at every check;
        // the next write changes the stamps again.
        state.stamps = stamps;
        match load_serving_cert(&self.files) {
            Ok(current) => {
                tracing::info!(cert = %self.files.cert.display(), "serving certificate reloaded");
                state.current = current;
            }
            Err(err) => tracing::warn!(
                cert = %self.files.cert.display(),
                key = %self.files.key.display(),
                error = format!("{err:#}"),
                "cannot load the new serving certificate; keeping the current one"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn file_stamps(files: &ServingCertFiles) -> std::io::Result<[FileStamp; 2]> {
    let stamp = |path: &PathBuf| fs::metadata(path).map(|meta| (meta.modified().ok(), meta.len()));
    Ok([stamp(&files.cert)?, stamp(&files.key)?])
}

fn load_serving_cert(files: &ServingCertFiles) -> Result<Arc<CertifiedKey>> {
    let cert_pem = fs::read(&files.cert).with_context(|| format!("reading {}", files.cert.display()))?;
    let chain = parse_pem_certs(&String::from_utf8_lossy(&cert_pem))
        .with_context(|| format!("reading {}", files.cert.display()))?;
    // Errors from here on name the file, never its content.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| anyhow::anyhow!("reading the private key {}: {err}", files.key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider())
        .with_context(|| format!("{} and {} do not make a usable pair", files.cert.display(), files.key.display()))?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    use rustls::ClientConfig;
    use rustls_pki_types::ServerName;
    use sks_pki::{CertificateAuthority, IssuedCert};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A directory removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let name = format!("sks-tls-test-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let path = std::env::temp_dir().join(name);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn serving(ca: &CertificateAuthority) -> IssuedCert {
        ca.issue_serving(&["localhost".to_owned()], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], DAY).unwrap()
    }

    fn write_files(dir: &Path, cert: &IssuedCert, padding: usize) -> ServingCertFiles {
        let files = ServingCertFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
        // Trailing newlines change the length, so a rewrite within the same mtime tick is still noticed.
        fs::write(&files.cert, format!("{}{}", cert.cert_pem, "\n".repeat(padding))).unwrap();
        fs::write(&files.key, &cert.key_pem).unwrap();
        files
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// What the server saw of one connection.
    type Accepted = Result<(Option<Vec<u8>>, usize), String>;

    /// A TLS server on a random local port reporting each handshake's ALPN and client chain length.
    async fn start_server(config: Arc<ServerConfig>) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Accepted>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let (_, conn) = tls.get_ref();
                            let seen = (
                                conn.alpn_protocol().map(<[u8]>::to_vec),
                                conn.peer_certificates().map_or(0, <[_]>::len),
                            );
                            let _ = tx.send(Ok(seen));
                            let _ = tls.write_all(b"ok").await;
                            let _ = tls.shutdown().await;
                        }
                        Err(err) => {
                            let _ = tx.send(Err(err.to_string()));
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn client_config(
        serving_ca: &CertificateAuthority,
        client: Option<&IssuedCert>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(der(&serving_ca.cert_pem)).unwrap();
        let builder = ClientConfig::builder_with_provider(provider().clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some(client) => builder
                .with_client_auth_cert(
                    vec![der(&client.cert_pem)],
                    PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Connects and reads the server's reply; returns the serving certificate and negotiated version.
    async fn connect(
        addr: std::net::SocketAddr,
        config: Arc<ClientConfig>,
    ) -> Result<(CertificateDer<'static>, rustls::ProtocolVersion), String> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(config).connect(name, tcp).await.map_err(|err| err.to_string())?;
        // With TLS 1.3 the client finishes before the server has judged its certificate: a refusal shows on read.
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await.map_err(|err| err.to_string())?;
        if reply != b"ok" {
            return Err(format!("unexpected reply {reply:?}"));
        }
        let (_, conn) = tls.get_ref();
        Ok((conn.peer_certificates().unwrap()[0].clone(), conn.protocol_version().unwrap()))
    }

    #[tokio::test]
    async fn serves_reloads_and_checks_client_certificates() {
        let dir = TempDir::new();
        let serving_ca = CertificateAuthority::generate("serving-ca").unwrap();
        let client_ca = CertificateAuthority::generate("client-ca").unwrap();
        let proxy_ca = CertificateAuthority::generate("front-proxy-ca").unwrap();
        let stranger_ca = CertificateAuthority::generate("stranger-ca").unwrap();
        let first = serving(&serving_ca);
        let files = write_files(&dir.0, &first, 0);
        let trust = ClientTrust::default();
        trust.set(&[&client_ca.cert_pem, &proxy_ca.cert_pem]).unwrap();
        let config = build_server_config(files, trust.clone(), Duration::ZERO).unwrap();
        let (addr, mut accepted) = start_server(config).await;
        let both = [&rustls::version::TLS13, &rustls::version::TLS12];

        // A client certificate from either CA is accepted, over h2 and both TLS versions.
        let alice = client_ca.issue_client("alice", &[], DAY).unwrap();
        let (cert, version) = connect(addr, client_config(&serving_ca, Some(&alice), &both)).await.unwrap();
        assert_eq!(cert, der(&first.cert_pem));
        assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
        assert_eq!(accepted.recv().await.unwrap(), Ok((Some(b"h2".to_vec()), 1)));
        let proxy = proxy_ca.issue_client("front-proxy-client", &[], DAY).unwrap();
        let tls12 = [&rustls::version::TLS12];
        let (_, version) = connect(addr, client_config(&serving_ca, Some(&proxy), &tls12)).await.unwrap();
        assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
        assert_eq!(accepted.recv().await.unwrap(), Ok((Some(b"h2".to_vec()), 1)));

        // A client certificate is optional.
        connect(addr, client_config(&serving_ca, None, &both)).await.unwrap();
        assert_eq!(accepted.recv().await.unwrap(), Ok((Some(b"h2".to_vec()), 0)));

        // A certificate from an unknown CA still completes the handshake: the
        // authenticator refuses it per request with a 401.
        let mallory = stranger_ca.issue_client("mallory", &[], DAY).unwrap();
        connect(addr, client_config(&serving_ca, Some(&mallory), &both)).await.unwrap();
        assert_eq!(accepted.recv().await.unwrap(), Ok((Some(b"h2".to_vec()), 1)));

        // New serving files are picked up by the next handshake.
        let second = serving(&serving_ca);
        write_files(&dir.0, &second, 1);
        let (cert, _) = connect(addr, client_config(&serving_ca, None, &both)).await.unwrap();
        assert_eq!(cert, der(&second.cert_pem));
        accepted.recv().await.unwrap().unwrap();

        // A broken file keeps the certificate in use.
        fs::write(dir.0.join("tls.crt"), "not a certificate").unwrap();
        let (cert, _) = connect(addr, client_config(&serving_ca, None, &both)).await.unwrap();
        assert_eq!(cert, der(&second.cert_pem));
        accepted.recv().await.unwrap().unwrap();
    }

    #[test]
    fn server_config_fails_without_usable_files() {
        let dir = TempDir::new();
        let ca = CertificateAuthority::generate("serving-ca").unwrap();
        let other = serving(&ca);
        let files = write_files(&dir.0, &serving(&ca), 0);
        // A key that belongs to another certificate.
        fs::write(&files.key, &other.key_pem).unwrap();
        assert!(server_config(files.clone(), ClientTrust::default()).is_err());
        fs::remove_file(&files.key).unwrap();
        assert!(server_config(files, ClientTrust::default()).is_err());
    }

    #[test]
    fn client_trust_rejects_bad_bundles_and_keeps_the_old_set() {
        let ca = CertificateAuthority::generate("client-ca").unwrap();
        let other = CertificateAuthority::generate("other-ca").unwrap();
        let trust = ClientTrust::default();
        assert!(trust.current().is_none());
        // Two CAs in one bundle.
        trust.set(&[&format!("{}{}", ca.cert_pem, other.cert_pem)]).unwrap();
        let pool = trust.current().unwrap();
        assert_eq!(pool.verifier.root_hint_subjects().len(), 2);
        assert!(trust.set(&[&ca.cert_pem, "garbage"]).is_err());
        let broken = ca.cert_pem.replace("MII", "M!I");
        assert!(trust.set(&[&broken]).is_err());
        assert_eq!(trust.current().unwrap().verifier.root_hint_subjects().len(), 2);
        trust.set(&[]).unwrap();
        assert!(trust.current().is_none());
    }

    #[test]
    fn hint_list_hands_out_one_copy_per_distinct_set() {
        let list = HintList::default();
        let a = vec![DistinguishedName::from(b"a".to_vec())];
        let b = vec![DistinguishedName::from(b"b".to_vec()), DistinguishedName::from(b"c".to_vec())];
        let first = list.intern(&a).as_ptr();
        assert_eq!(list.intern(&b)[1].as_ref(), b"c");
        assert_eq!(list.intern(&a).as_ptr(), first);
        assert!(list.intern(&[]).is_empty());
        assert_eq!(list.next.get().and_then(|n| n.next.get()).and_then(|n| n.hints.get()).map(Vec::len), Some(0));
    }
}
