//! One health check of one backend: a TCP connect, or an HTTP `GET` (over TLS
//! for `https`) that must answer 2xx. The caller bounds it with the
//! healthcheck timeout; this module only says pass or fail, and why.
//!
//! `https` checks do not verify the backend's certificate: the zone has no
//! idea which CA a node's service uses, and a real NLB's https check is a
//! liveness probe, not an authentication.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::plan::{Check, Probe};

/// The longest status line read before giving up on an HTTP answer.
const MAX_STATUS_LINE: usize = 1024;

/// Runs health checks; cheap to clone (the TLS settings are shared).
#[derive(Clone)]
pub struct Prober {
    tls: tokio_rustls::TlsConnector,
}

impl Prober {
    /// A prober with its own TLS settings (ring provider, no verification).
    pub fn new() -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Prober { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// One check of `ip` on `check.port`: `Ok` when it passes, else why not.
    pub async fn probe(&self, check: &Check, ip: Ipv4Addr) -> Result<(), String> {
        let addr = SocketAddr::from((ip, check.port));
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
        match &check.probe {
            Probe::Tcp => Ok(()),
            Probe::Http { uri } => http_get(stream, &addr.to_string(), uri).await,
            Probe::Https { uri, sni } => {
                let name = match sni {
                    Some(sni) => ServerName::try_from(sni.clone()).map_err(|e| format!("tls-sni {sni:?}: {e}"))?,
                    None => ServerName::from(std::net::IpAddr::V4(ip)),
                };
                let tls =
                    self.tls.connect(name, stream).await.map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                http_get(tls, &addr.to_string(), uri).await
            }
        }
    }
}

/// Sends `GET uri` and passes when the status line says 2xx.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, host: &str, uri: &str) -> Result<(), String> {
    let request = format!(
        "GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sks-zone-nlb-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending GET {uri}: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() > MAX_STATUS_LINE {
            return Err(format!("GET {uri}: no status line in the first {MAX_STATUS_LINE} bytes"));
        }
        let n = stream.read(&mut buf).await.map_err(|e| format!("reading the answer to GET {uri}: {e}"))?;
        if n == 0 {
            return Err(format!("GET {uri}: connection closed before a status line"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    match status_code(&head) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(format!("GET {uri} answered {code}")),
        None => Err(format!("GET {uri}: not an HTTP answer: {:?}", String::from_utf8_lossy(&head))),
    }
}

/// The status code of an HTTP/1.x answer (`HTTP/1.1 204 No Content`).
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Accepts any certificate, but still checks the handshake signatures, so a
/// TLS stack that is broken still fails the check.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500 Internal Server Error\r\nx: y"), Some(500));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
    }

    async fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        });
        addr
    }

    fn check(probe: Probe, port: u16) -> Check {
        Check { probe, port, interval_s: 5, timeout_s: 2, retries: 1 }
    }

    #[tokio::test]
    async fn http_checks_pass_on_2xx_only() {
        let prober = Prober::new().unwrap();
        let http = |port| check(Probe::Http { uri: "/healthz".into() }, port);
        let ok = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(prober.probe(&http(ok.port()), Ipv4Addr::LOCALHOST).await, Ok(()));
        let bad = serve_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        let err = prober.probe(&http(bad.port()), Ipv4Addr::LOCALHOST).await.unwrap_err();
        assert!(err.contains("answered 500"), "{err}");
        let closed = serve_once(b"").await;
        assert!(prober.probe(&http(closed.port()), Ipv4Addr::LOCALHOST).await.is_err());
    }

    #[tokio::test]
    async fn https_checks_accept_a_self_signed_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["backend.test".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(s).await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tls.read(&mut buf).await;
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let _ = tls.shutdown().await;
        });
        let prober = Prober::new().unwrap();
        let https = check(Probe::Https { uri: "/".into(), sni: Some("backend.test".into()) }, port);
        assert_eq!(prober.probe(&https, Ipv4Addr::LOCALHOST).await, Ok(()));
        // A plain-HTTP backend fails an https check.
        let plain = serve_once(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let https = check(Probe::Https { uri: "/".into(), sni: None }, plain.port());
        assert!(prober.probe(&https, Ipv4Addr::LOCALHOST).await.is_err());
    }
}
