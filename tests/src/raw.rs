//! Raw clients for limit and security tests: TCP and TLS connections driven
//! byte by byte (slow clients), TLS clients pinned to a protocol version, and
//! how long a server takes to close a connection on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A TLS client configuration trusting `ca_pem`, offering only `versions` and
/// the `alpn` protocols, with an optional client certificate (cert, key PEM).
pub fn tls_client(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    identity: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM")).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// `host:port` of an `http(s)://host:port` URL.
pub fn addr_of(url: &str) -> String {
    url.split("://").nth(1).unwrap_or(url).trim_end_matches('/').to_owned()
}

/// A TLS connection to `url` (for server name `localhost`).
pub async fn tls_connect(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr_of(url)).await?;
    tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// Sends `dribble` one byte every `every` (nothing when empty) and returns how
/// long the server took to close the connection, or `None` if it was still
/// open after `limit`. Anything the server sends before closing is ignored.
pub async fn time_to_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    dribble: &[u8],
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut next = 0;
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(every);
    loop {
        if started.elapsed() > limit {
            return None;
        }
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if next < dribble.len() {
                    if conn.write_all(&dribble[next..=next]).await.is_err() || conn.flush().await.is_err() {
                        return Some(started.elapsed());
                    }
                    next += 1;
                }
            }
        }
    }
}
