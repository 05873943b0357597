//! Simulated kube-proxy: on every node that runs a simulated kubelet, the
//! nodePorts of the cluster's NodePort and LoadBalancer Services answer HTTP
//! (there are no pods to forward to, so the "endpoint" is the proxy itself),
//! and so do kube-proxy's health endpoints (`:10256/healthz` and each
//! Service's `healthCheckNodePort`). With it the NLB data plane has something
//! to reach: `curl http://<LoadBalancer IP>` works on the local stack.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use super::Options;
use crate::app::App;

/// kube-proxy's `--healthz-bind-address` port.
const HEALTHZ_PORT: u16 = 10256;
/// How often Services and nodes are compared with the listeners.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// What one listener answers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// A Service's nodePort: `<namespace>/<name>` answered by `<node>`.
    Service { service: String, node: String },
    /// A health endpoint.
    Healthz,
}

/// The listeners the current Services and nodes call for: address → answer.
fn desired(nodes: &[(String, IpAddr)], services: &[Service]) -> BTreeMap<SocketAddr, Answer> {
    let mut out = BTreeMap::new();
    for (node, ip) in nodes {
        out.insert(SocketAddr::new(*ip, HEALTHZ_PORT), Answer::Healthz);
        for svc in services {
            let Some(spec) = &svc.spec else { continue };
            if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
                continue;
            }
            let name = format!(
                "{}/{}",
                svc.metadata.namespace.as_deref().unwrap_or_default(),
                svc.metadata.name.as_deref().unwrap_or_default()
            );
            for p in spec.ports.iter().flatten() {
                let tcp = p.protocol.as_deref().is_none_or(|x| x == "TCP");
                if let (true, Some(np)) = (tcp, p.node_port.and_then(|n| u16::try_from(n).ok())) {
                    out.insert(SocketAddr::new(*ip, np), Answer::Service { service: name.clone(), node: node.clone() });
                }
            }
            if let Some(hc) = spec.health_check_node_port.and_then(|n| u16::try_from(n).ok()) {
                out.insert(SocketAddr::new(*ip, hc), Answer::Healthz);
            }
        }
    }
    out
}

async fn serve(listener: tokio::net::TcpListener, answer: Answer) {
    let body = match &answer {
        Answer::Service { service, node } => format!("{service} on node {node}\n"),
        Answer::Healthz => "ok\n".to_owned(),
    };
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// Starts the simulated kube-proxies of the nodes `options` selects.
pub fn spawn(app: Arc<App>, options: Options) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut running: BTreeMap<SocketAddr, (Answer, JoinHandle<()>)> = BTreeMap::new();
        let mut client: Option<kube::Client> = None;
        let mut warned = BTreeSet::new();
        loop {
            tokio::time::sleep(RECONCILE_EVERY).await;
            if client.is_none() {
                client = match kube::config::Kubeconfig::read_from(&options.kubeconfig) {
                    Ok(kc) => match kube::Config::from_custom_kubeconfig(kc, &Default::default()).await {
                        Ok(config) => kube::Client::try_from(config).ok(),
                        Err(_) => None,
                    },
                    Err(_) => None,
                };
            }
            let Some(kube) = client.clone() else { continue };
            let services = match Api::<Service>::all(kube).list(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    tracing::debug!(error = %e, "simulated kube-proxy: listing Services failed");
                    continue;
                }
            };
            let machines = app.read(|w| super::machines(w, &app.config, &options)).unwrap_or_default();
            let nodes: Vec<(String, IpAddr)> =
                machines.values().filter_map(|m| Some((m.name.clone(), IpAddr::V4(m.ipv4?)))).collect();
            let want = desired(&nodes, &services);
            running.retain(|addr, (answer, task)| {
                let keep = want.get(addr) == Some(answer);
                if !keep {
                    task.abort();
                }
                keep
            });
            for (addr, answer) in want {
                if running.contains_key(&addr) {
                    continue;
                }
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        warned.remove(&addr);
                        running.insert(addr, (answer.clone(), tokio::spawn(serve(l, answer))));
                    }
                    Err(e) => {
                        if warned.insert(addr) {
                            tracing::warn!(%addr, error = %e, "simulated kube-proxy cannot listen; retrying");
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn svc(name: &str, type_: &str, node_port: i32, hc: Option<i32>) -> Service {
        Service {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                ports: Some(vec![ServicePort { port: 80, node_port: Some(node_port), ..Default::default() }]),
                health_check_node_port: hc,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_ports_and_health_endpoints_on_every_node() {
        let nodes = [("a".to_string(), "127.0.0.2".parse().unwrap()), ("b".to_string(), "127.0.0.3".parse().unwrap())];
        let want = desired(&nodes, &[svc("web", "LoadBalancer", 30080, Some(31000)), svc("db", "ClusterIP", 0, None)]);
        assert_eq!(want.len(), 6, "{want:?}");
        let at = |ip: &str, port: u16| want.get(&SocketAddr::new(ip.parse().unwrap(), port)).cloned();
        assert_eq!(at("127.0.0.3", 30080), Some(Answer::Service { service: "default/web".into(), node: "b".into() }));
        assert_eq!(at("127.0.0.2", 31000), Some(Answer::Healthz));
        assert_eq!(at("127.0.0.2", HEALTHZ_PORT), Some(Answer::Healthz));
    }
}
