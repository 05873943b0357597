//! Lean HTTPS connections for load: one HTTP/1.1 keep-alive connection per
//! worker, or HTTP/2 connections that multiplex many watches.
//!
//! hyper's connection API is used instead of reqwest so the number of TCP
//! connections is exactly what a scenario asks for, and so the load generator,
//! which shares the CPUs with the server, spends as little as possible per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect: address, CA, client certificate.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    authority: String,
    h1: TlsConnector,
    h2: TlsConnector,
}

fn tls_config(ca_pem: &str, identity: &sks_pki::IssuedCert, alpn: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("serving CA")?)?;
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).context("client key")?;
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

impl Target {
    /// The server at `url` (`https://127.0.0.1:port`), trusting `ca_pem`, presenting `identity`.
    pub fn new(url: &str, ca_pem: &str, identity: &sks_pki::IssuedCert) -> anyhow::Result<Self> {
        orchestrator::install_crypto_provider();
        let authority = url.strip_prefix("https://").context("an https:// URL")?.trim_end_matches('/').to_owned();
        let addr: SocketAddr = authority.parse().with_context(|| format!("{authority:?} is not IP:port"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing to load a non-loopback address: {addr}");
        }
        Ok(Target {
            addr,
            authority,
            h1: TlsConnector::from(Arc::new(tls_config(ca_pem, identity, b"http/1.1")?)),
            h2: TlsConnector::from(Arc::new(tls_config(ca_pem, identity, b"h2")?)),
        })
    }

    async fn tls(
        &self,
        connector: &TlsConnector,
    ) -> anyhow::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
        let connect = async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(self.addr.ip().into());
            anyhow::Ok(connector.connect(name, tcp).await?)
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.context("connect timed out")??;
        Ok(TokioIo::new(tls))
    }

    /// A new HTTP/1.1 keep-alive connection.
    pub async fn h1(&self) -> anyhow::Result<H1> {
        let io = self.tls(&self.h1).await?;
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(H1 { sender, authority: self.authority.clone() })
    }

    /// A new HTTP/2 connection (negotiated by ALPN).
    pub async fn h2(&self) -> anyhow::Result<H2> {
        let io = self.tls(&self.h2).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let (sender, conn) = builder.handshake(io).await?;
        tokio::spawn(conn);
        Ok(H2 { sender, base: format!("https://{}", self.authority) })
    }
}

/// An HTTP/1.1 connection; one request at a time.
pub struct H1 {
    sender: http1::SendRequest<Empty<Bytes>>,
    authority: String,
}

impl H1 {
    /// GETs `path` with `accept`; returns the status and the body's length once it is read.
    pub async fn get(&mut self, path: &str, accept: &str) -> anyhow::Result<(StatusCode, usize)> {
        self.sender.ready().await?;
        let req = Request::get(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, accept)
            .body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body.len()))
    }
}

/// An HTTP/2 connection; cheap to clone, each clone opens streams on it.
#[derive(Clone)]
pub struct H2 {
    sender: http2::SendRequest<Empty<Bytes>>,
    base: String,
}

impl H2 {
    /// Opens a GET stream on `path`; returns once the response headers arrived.
    pub async fn open(&mut self, path: &str) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await?;
        let req = Request::get(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())?;
        Ok(self.sender.send_request(req).await?)
    }
}
