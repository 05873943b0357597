//! Small HTTP servers standing in for kube-proxy on an instance's address:
//! each answers every request with its own name, and can be stopped (the
//! port then refuses connections) and started again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One backend listening on an address.
pub struct Backend {
    /// What it answers.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    /// Starts answering `name` on `addr`.
    pub async fn start(name: &str, addr: SocketAddr) -> Backend {
        let mut b = Backend { name: name.to_owned(), addr, task: None };
        b.resume().await;
        b
    }

    /// Stops listening: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again (after `stop`).
    pub async fn resume(&mut self) {
        self.stop();
        let listener = crate::wait_for(&format!("binding {}", self.addr), Duration::from_secs(10), || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        let name = self.name.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { continue };
                let name = name.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let reply =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}", name.len());
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        }));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP GET of `/` at `addr` over a new connection: the body, or `None`
/// when the connection is refused, reset or answers nothing within 3 s.
pub async fn get(addr: SocketAddr) -> Option<String> {
    let attempt = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"GET / HTTP/1.1\r\nhost: lb\r\nconnection: close\r\n\r\n").await.ok()?;
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt).await.ok().flatten()
}
