//! The NLB data plane of `sks-zone`, over real sockets: each test starts a
//! zone, an instance pool and an NLB, and runs small servers on the members'
//! public addresses at the target port (standing in for kube-proxy). Traffic
//! goes through the NLB's address; health is read from `healthcheck-status`.
//!
//! The zone runs with `--nlb-healthcheck-second-ms 100`: the API allows no
//! healthcheck interval under 5 s, so a "second" lasts 100 ms here (interval 5
//! = 0.5 s, timeout 2 = 0.2 s). Ports are picked free on the loopback
//! addresses at run time, since other zones (other tests) hand out the same
//! addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use exo_openapi::Spec;
use orchestrator::Client;
use orchestrator::model::*;
use sks_e2e::wait_for;
use sks_e2e::zone::{Zone, ZoneOptions, signed_request};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Patience for every condition: health changes take about half a second here.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- stand-in servers -------------------------------------------------------

/// A TCP server on a backend address: says its name on each connection, then echoes.
struct Echo {
    name: String,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Echo {
    async fn start(name: &str, addr: SocketAddr) -> Echo {
        let mut echo = Echo { name: name.to_owned(), addr, task: None };
        echo.resume().await;
        echo
    }

    /// Stops listening: new connections (and health checks) are refused.
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn resume(&mut self) {
        self.stop();
        let addr = self.addr;
        let listener =
            wait_for(&format!("binding {addr}"), PATIENCE, || async move { TcpListener::bind(addr).await.ok() }).await;
        let name = self.name.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { continue };
                let greeting = format!("{name}\n");
                tokio::spawn(async move {
                    if conn.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        }));
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What [`HttpHealth`] does with a request when told to answer this: nothing.
const STALL: u16 = 0;

/// An HTTP server answering `GET /healthz` with a status that can change (other
/// paths: 404), or never answering (`STALL`).
struct HttpHealth {
    status: Arc<AtomicU16>,
    /// Requests read and left unanswered.
    stalled: Arc<AtomicUsize>,
    /// Unanswered requests whose client gave up and closed the connection.
    abandoned: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpHealth {
    async fn start(addr: SocketAddr, status: u16) -> HttpHealth {
        let status = Arc::new(AtomicU16::new(status));
        let (stalled, abandoned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let listener =
            wait_for(&format!("binding {addr}"), PATIENCE, || async move { TcpListener::bind(addr).await.ok() }).await;
        let answer = status.clone();
        let (stalls, abandons) = (stalled.clone(), abandoned.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { continue };
                let answer = answer.clone();
                let (stalls, abandons) = (stalls.clone(), abandons.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(conn);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.is_err() {
                        return;
                    }
                    // The rest of the head, up to the blank line.
                    let mut line = String::new();
                    while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) && line != "\r\n" {
                        line.clear();
                    }
                    let code =
                        if request_line.starts_with("GET /healthz ") { answer.load(Ordering::SeqCst) } else { 404 };
                    if code == STALL {
                        stalls.fetch_add(1, Ordering::SeqCst);
                        // Holds the connection until the client closes it.
                        let mut rest = Vec::new();
                        let _ = reader.read_to_end(&mut rest).await;
                        abandons.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let reply = format!("HTTP/1.1 {code} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = reader.get_mut().write_all(reply.as_bytes()).await;
                });
            }
        });
        HttpHealth { status, stalled, abandoned, task }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for HttpHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP server on a backend address: answers each datagram with `<name>:<datagram>`.
struct UdpEcho(JoinHandle<()>);

impl UdpEcho {
    async fn start(name: &str, addr: SocketAddr) -> UdpEcho {
        let socket =
            wait_for(&format!("binding udp {addr}"), PATIENCE, || async move { UdpSocket::bind(addr).await.ok() })
                .await;
        let name = name.to_owned();
        UdpEcho(tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
                let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
                let _ = socket.send_to(reply.as_bytes(), from).await;
            }
        }))
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---- clients ----------------------------------------------------------------

/// Connects to `addr` (from `from` when given) and reads the backend's name;
/// `None` when refused, reset or closed without a name.
async fn hello_from(from: Option<Ipv4Addr>, addr: SocketAddr) -> Option<String> {
    let attempt = async {
        let stream = match from {
            Some(ip) => {
                let socket = TcpSocket::new_v4().ok()?;
                socket.bind(SocketAddr::from((ip, 0))).ok()?;
                socket.connect(addr).await.ok()?
            }
            None => TcpStream::connect(addr).await.ok()?,
        };
        let mut line = String::new();
        let n = BufReader::new(stream).read_line(&mut line).await.ok()?;
        (n > 0).then(|| line.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt).await.ok().flatten()
}

async fn hello(addr: SocketAddr) -> Option<String> {
    hello_from(None, addr).await
}

/// The backends `n` consecutive connections reach (`None` for a failed one).
async fn hellos(addr: SocketAddr, n: usize) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(hello(addr).await);
    }
    out
}

/// Whether a connection to `addr` is refused outright (nothing listens).
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Sends `payload` from `socket` to `nlb` and waits briefly for the answer, which must come from `nlb`.
async fn udp_ask(socket: &UdpSocket, nlb: SocketAddr, payload: &str) -> Option<String> {
    socket.send_to(payload.as_bytes(), nlb).await.ok()?;
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await.ok()?.ok()?;
    assert_eq!(from, nlb, "replies come from the NLB's address");
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A TCP port nothing listens on at `ip` right now.
fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0)).expect("a free port").local_addr().expect("its address").port()
}

/// A UDP port nothing listens on at `ip` right now.
fn free_udp_port(ip: Ipv4Addr) -> u16 {
    std::net::UdpSocket::bind((ip, 0)).expect("a free port").local_addr().expect("its address").port()
}

// ---- the zone side ----------------------------------------------------------

/// A zone with a pool of running instances and an NLB.
struct Lab {
    zone: Zone,
    c: Client,
    pool: Uuid,
    lb: Uuid,
    /// The NLB's address.
    ip: Ipv4Addr,
}

fn zone_args() -> Vec<String> {
    vec!["--nlb-healthcheck-second-ms".into(), "100".into()]
}

impl Lab {
    async fn start(size: i64) -> Lab {
        Lab::start_with(size, zone_args()).await
    }

    async fn start_with(size: i64, extra: Vec<String>) -> Lab {
        let zone = Zone::start(ZoneOptions { extra, ..Default::default() });
        let c = zone.client().await;
        let kind = c.list_instance_types().await.unwrap()[3].id;
        let pool = c
            .create_instance_pool(&CreateInstancePool {
                spec: InstancePoolSpec {
                    name: Some("web".into()),
                    instance_type: Some(Ref::from(kind)),
                    template: Some(sks_e2e::zone::known_template(&c).await),
                    disk_size: Some(10),
                    ..Default::default()
                },
                size,
            })
            .await
            .unwrap()
            .reference_id()
            .unwrap();
        let spec = LoadBalancerSpec { name: Some("lb".into()), ..Default::default() };
        let lb = c.create_load_balancer(&spec).await.unwrap().reference_id().unwrap();
        let ip = c.get_load_balancer(lb).await.unwrap().ip.expect("NLB address");
        Lab { zone, c, pool, lb, ip }
    }

    /// The running members' public addresses, oldest first.
    async fn members(&self) -> Vec<Ipv4Addr> {
        let filter = InstanceFilter { manager_id: Some(self.pool), ..Default::default() };
        let mut ips: Vec<Ipv4Addr> = self
            .c
            .list_instances(&filter)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.state == InstanceState::Running)
            .filter_map(|i| i.public_ip)
            .collect();
        // Addresses are handed out in order, so they sort oldest first.
        ips.sort();
        ips
    }

    /// Adds a service and returns its id.
    async fn add(&self, spec: LoadBalancerServiceSpec) -> Uuid {
        let name = spec.name.clone();
        self.c.add_service_to_load_balancer(self.lb, &spec).await.unwrap();
        let lb = self.c.get_load_balancer(self.lb).await.unwrap();
        lb.services.iter().find(|s| s.spec.name == name).expect("the added service").id
    }

    async fn update(&self, svc: Uuid, spec: LoadBalancerServiceSpec) {
        self.c.update_load_balancer_service(self.lb, svc, &spec).await.unwrap();
    }

    /// `healthcheck-status` of a service, by backend address.
    async fn health(&self, svc: Uuid) -> BTreeMap<Ipv4Addr, HealthStatus> {
        let svc = self.c.get_load_balancer_service(self.lb, svc).await.unwrap();
        let list = svc.healthcheck_status.expect("healthcheck-status is reported");
        list.into_iter().map(|s| (s.public_ip.expect("public-ip"), s.status.expect("status"))).collect()
    }

    /// Waits until `healthcheck-status` is exactly `want`.
    async fn wait_health(&self, svc: Uuid, want: &[(Ipv4Addr, HealthStatus)]) {
        let want: BTreeMap<Ipv4Addr, HealthStatus> = want.iter().cloned().collect();
        wait_for(&format!("healthcheck-status {want:?}"), PATIENCE, || async {
            (self.health(svc).await == want).then_some(())
        })
        .await;
    }

    /// The NLB's address at `port`.
    fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

fn tcp_check(port: u16) -> Healthcheck {
    Healthcheck {
        mode: Some(HealthcheckMode::Tcp),
        port: Some(i64::from(port)),
        interval: Some(5),
        timeout: Some(2),
        retries: Some(1),
        ..Default::default()
    }
}

fn service(name: &str, pool: Uuid, port: u16, target: u16, strategy: Strategy) -> LoadBalancerServiceSpec {
    LoadBalancerServiceSpec {
        name: Some(name.into()),
        description: None,
        instance_pool: Some(Ref::from(pool)),
        protocol: Some(Protocol::Tcp),
        strategy: Some(strategy),
        port: Some(i64::from(port)),
        target_port: Some(i64::from(target)),
        healthcheck: Some(tcp_check(target)),
    }
}

fn all(ips: &[Ipv4Addr], status: HealthStatus) -> Vec<(Ipv4Addr, HealthStatus)> {
    ips.iter().map(|ip| (*ip, status.clone())).collect()
}

/// Starts an echo server named `b0`, `b1`... on each member at `port`.
async fn echoes(members: &[Ipv4Addr], port: u16) -> Vec<Echo> {
    let mut out = Vec::new();
    for (i, ip) in members.iter().enumerate() {
        out.push(Echo::start(&format!("b{i}"), SocketAddr::from((*ip, port))).await);
    }
    out
}

/// Waits until `n` connections through `addr` reach exactly the backends named `want`.
async fn wait_reaching(addr: SocketAddr, n: usize, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(std::string::ToString::to_string).collect();
    wait_for(&format!("{n} connections to {addr} reaching {want:?}"), PATIENCE, || async {
        let got: Vec<Option<String>> = hellos(addr, n).await;
        let reached: BTreeSet<String> = got.iter().flatten().cloned().collect();
        (got.iter().all(Option::is_some) && reached == want).then_some(())
    })
    .await;
}

// ---- the tests --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_reaches_every_backend_and_status_conforms_to_the_spec() {
    let lab = Lab::start(3).await;
    let members = lab.members().await;
    assert_eq!(members.len(), 3);
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;

    let got = hellos(lab.at(port), 9).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for name in got.iter().flatten() {
        *counts.entry(name.clone()).or_default() += 1;
    }
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), ["b0", "b1", "b2"], "every backend is reached: {got:?}");
    assert!(counts.values().all(|n| *n == 3), "round-robin takes them in turn: {counts:?}");

    // The data goes both ways: the backend echoes what the client sends.
    let mut conn = TcpStream::connect(lab.at(port)).await.unwrap();
    let mut reader = BufReader::new(&mut conn);
    let mut name = String::new();
    reader.read_line(&mut name).await.unwrap();
    conn.write_all(b"ping\n").await.unwrap();
    let mut echoed = [0u8; 5];
    conn.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping\n");

    // The zone's answers, healthcheck-status included, conform to the spec.
    let spec = Spec::embedded();
    for path in [format!("/load-balancer/{}", lab.lb), "/load-balancer".to_owned()] {
        let (status, body) = signed_request(&lab.zone.endpoint(), "GET", &path, None, None, 600).await;
        assert_eq!(status, 200, "{body}");
        let op = spec.operation("GET", &path).expect("in the spec");
        if let Err(v) = op.validate_response_body(200, &body) {
            panic!("GET {path} does not conform: {v:?}\n{body}");
        }
        assert!(body.to_string().contains("\"healthcheck-status\""), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_hash_keeps_each_client_on_one_backend() {
    let lab = Lab::start(3).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::SourceHash)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;

    let mut chosen = BTreeSet::new();
    for i in 1..=8u8 {
        let client = Ipv4Addr::new(127, 1, 0, i);
        let mut seen = BTreeSet::new();
        for _ in 0..5 {
            seen.insert(hello_from(Some(client), lab.at(port)).await.expect("forwarded"));
        }
        assert_eq!(seen.len(), 1, "client {client} always reaches one backend: {seen:?}");
        chosen.extend(seen);
    }
    assert!(chosen.len() >= 2, "different clients are spread over the backends: {chosen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_reported_and_skipped_until_it_returns() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let mut servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;

    servers[0].stop();
    lab.wait_health(svc, &[(members[0], HealthStatus::Failure), (members[1], HealthStatus::Success)]).await;
    let got = hellos(lab.at(port), 6).await;
    assert!(got.iter().all(|n| n.as_deref() == Some("b1")), "no new connection goes to the failed backend: {got:?}");

    servers[0].resume().await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_need_a_2xx_answer_on_the_uri() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let check_port = free_port(members[0]);
    let healthy = HttpHealth::start(SocketAddr::from((members[0], check_port)), 200).await;
    let failing = HttpHealth::start(SocketAddr::from((members[1], check_port)), 500).await;
    let port = free_port(lab.ip);
    let hc = Healthcheck {
        mode: Some(HealthcheckMode::Http),
        port: Some(i64::from(check_port)),
        uri: Some("/healthz".into()),
        ..tcp_check(check_port)
    };
    let spec = LoadBalancerServiceSpec {
        healthcheck: Some(hc),
        ..service("web", lab.pool, port, target, Strategy::RoundRobin)
    };
    let svc = lab.add(spec).await;
    lab.wait_health(svc, &[(members[0], HealthStatus::Success), (members[1], HealthStatus::Failure)]).await;
    let got = hellos(lab.at(port), 4).await;
    assert!(got.iter().all(|n| n.as_deref() == Some("b0")), "the backend answering 500 gets nothing: {got:?}");

    failing.answer(204);
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;
    healthy.answer(503);
    lab.wait_health(svc, &[(members[0], HealthStatus::Failure), (members[1], HealthStatus::Success)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_healthy_backend_connections_are_refused_until_one_returns() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let mut servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;

    // A connection made while healthy; stopping a server keeps its open connections.
    let mut open = BufReader::new(TcpStream::connect(lab.at(port)).await.unwrap());
    let mut name = String::new();
    open.read_line(&mut name).await.unwrap();
    for s in &mut servers {
        s.stop();
    }
    lab.wait_health(svc, &all(&members, HealthStatus::Failure)).await;

    // Nothing listens: the connect itself fails, at once.
    wait_for("the NLB's port to refuse", PATIENCE, || async { refused(lab.at(port)).await.then_some(()) }).await;
    for _ in 0..3 {
        let outcome = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(lab.at(port)))
            .await
            .expect("the connect fails at once");
        match outcome {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
            Ok(_) => panic!("a connection was accepted with no healthy backend"),
        }
    }
    open.get_mut().write_all(b"still there\n").await.unwrap();
    let mut echoed = String::new();
    open.read_line(&mut echoed).await.unwrap();
    assert_eq!(echoed, "still there\n", "the open connection was not cut");

    // One backend back: connects work again and reach it.
    servers[1].resume().await;
    lab.wait_health(svc, &[(members[0], HealthStatus::Failure), (members[1], HealthStatus::Success)]).await;
    wait_reaching(lab.at(port), 4, &["b1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_without_an_answer_fails_at_its_timeout_after_retries_checks() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let check_port = free_port(members[0]);
    let stalling = HttpHealth::start(SocketAddr::from((members[0], check_port)), 200).await;
    let _healthy = HttpHealth::start(SocketAddr::from((members[1], check_port)), 200).await;
    let port = free_port(lab.ip);
    // Interval 5 and timeout 2, the shortest the API allows: 0.5 s and 0.2 s here.
    let hc = Healthcheck {
        mode: Some(HealthcheckMode::Http),
        uri: Some("/healthz".into()),
        retries: Some(3),
        ..tcp_check(check_port)
    };
    let spec = LoadBalancerServiceSpec {
        healthcheck: Some(hc),
        ..service("web", lab.pool, port, target, Strategy::RoundRobin)
    };
    let svc = lab.add(spec).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;

    // The server accepts the connection and reads the request, but never answers.
    let silent_since = std::time::Instant::now();
    stalling.answer(STALL);
    lab.wait_health(svc, &[(members[0], HealthStatus::Failure), (members[1], HealthStatus::Success)]).await;
    let stalled = stalling.stalled.load(Ordering::SeqCst);
    assert!(stalled >= 3, "failed after {stalled} unanswered checks; retries is 3");
    // Three checks half a second apart, the last given its 0.2 s: at least a second.
    let took = silent_since.elapsed();
    assert!(took >= Duration::from_millis(900), "failed after {took:?}, before three checks could time out");
    // Each unanswered check was abandoned at its timeout, not left open.
    wait_for("the checker to close its unanswered checks", PATIENCE, || async {
        (stalling.abandoned.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    let got = hellos(lab.at(port), 4).await;
    assert!(got.iter().all(|n| n.as_deref() == Some("b1")), "the stalling backend gets nothing: {got:?}");

    stalling.answer(200);
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_round_trip_per_client_session() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_udp_port(members[0]);
    let _udp: Vec<UdpEcho> = {
        let mut v = Vec::new();
        for (i, ip) in members.iter().enumerate() {
            v.push(UdpEcho::start(&format!("u{i}"), SocketAddr::from((*ip, target))).await);
        }
        v
    };
    // UDP backends are checked over TCP, on a port of their own.
    let check_port = free_port(members[0]);
    let mut checks = echoes(&members, check_port).await;
    let port = free_udp_port(lab.ip);
    let spec = LoadBalancerServiceSpec {
        protocol: Some(Protocol::Udp),
        healthcheck: Some(tcp_check(check_port)),
        ..service("dns", lab.pool, port, target, Strategy::RoundRobin)
    };
    let svc = lab.add(spec).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;

    let nlb = lab.at(port);
    let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = wait_for("a UDP answer through the NLB", PATIENCE, || udp_ask(&first, nlb, "ping")).await;
    let (backend, payload) = answer.split_once(':').unwrap();
    assert_eq!(payload, "ping");
    for i in 0..5 {
        let again = udp_ask(&first, nlb, &format!("n{i}")).await.expect("an answer in the same session");
        assert_eq!(again, format!("{backend}:n{i}"), "one client address keeps its backend");
    }
    let second = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = udp_ask(&second, nlb, "pong").await.expect("an answer for a second client");
    assert_ne!(other.split_once(':').unwrap().0, backend, "round-robin gives the next client the other backend");

    // No healthy backend: datagrams of a new client are dropped.
    for c in &mut checks {
        c.stop();
    }
    lab.wait_health(svc, &all(&members, HealthStatus::Failure)).await;
    let third = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..3 {
        assert_eq!(udp_ask(&third, nlb, "anyone?").await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_the_service_keeps_the_address_and_forwarding() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;

    // Strategy: one client now stays on one backend.
    lab.update(svc, LoadBalancerServiceSpec { strategy: Some(Strategy::SourceHash), ..Default::default() }).await;
    wait_for("source-hash to apply", PATIENCE, || async {
        let got = hellos(lab.at(port), 6).await;
        let names: BTreeSet<_> = got.iter().cloned().collect();
        (names.len() == 1 && got[0].is_some()).then_some(())
    })
    .await;

    // Health check: http on a port of its own; forwarding goes on.
    let check_port = free_port(members[0]);
    let _http: Vec<HttpHealth> = {
        let mut v = Vec::new();
        for ip in &members {
            v.push(HttpHealth::start(SocketAddr::from((*ip, check_port)), 200).await);
        }
        v
    };
    let hc = Healthcheck { mode: Some(HealthcheckMode::Http), uri: Some("/healthz".into()), ..tcp_check(check_port) };
    lab.update(svc, LoadBalancerServiceSpec { healthcheck: Some(hc), ..Default::default() }).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    assert!(hello(lab.at(port)).await.is_some(), "still forwarding after a healthcheck change");

    // Target port: traffic follows to the new servers.
    let new_target = free_port(members[0]);
    let _moved: Vec<Echo> = {
        let mut v = Vec::new();
        for (i, ip) in members.iter().enumerate() {
            v.push(Echo::start(&format!("n{i}"), SocketAddr::from((*ip, new_target))).await);
        }
        v
    };
    let change = LoadBalancerServiceSpec {
        strategy: Some(Strategy::RoundRobin),
        target_port: Some(i64::from(new_target)),
        ..Default::default()
    };
    lab.update(svc, change).await;
    wait_reaching(lab.at(port), 4, &["n0", "n1"]).await;

    // Port: the listener moves; the old port refuses.
    let new_port = free_port(lab.ip);
    lab.update(svc, LoadBalancerServiceSpec { port: Some(i64::from(new_port)), ..Default::default() }).await;
    wait_reaching(lab.at(new_port), 4, &["n0", "n1"]).await;
    wait_for("the old port to close", PATIENCE, || async { refused(lab.at(port)).await.then_some(()) }).await;

    assert_eq!(lab.c.get_load_balancer(lab.lb).await.unwrap().ip, Some(lab.ip), "the NLB keeps its address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_service_or_the_nlb_stops_its_listener() {
    let lab = Lab::start(1).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let (p1, p2) = (free_port(lab.ip), free_port(lab.ip));
    let s1 = lab.add(service("one", lab.pool, p1, target, Strategy::RoundRobin)).await;
    let s2 = lab.add(service("two", lab.pool, p2, target, Strategy::RoundRobin)).await;
    lab.wait_health(s1, &all(&members, HealthStatus::Success)).await;
    lab.wait_health(s2, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(p1), 2, &["b0"]).await;
    wait_reaching(lab.at(p2), 2, &["b0"]).await;

    lab.c.delete_load_balancer_service(lab.lb, s1).await.unwrap();
    wait_for("the deleted service's port to close", PATIENCE, || async { refused(lab.at(p1)).await.then_some(()) })
        .await;
    assert_eq!(hello(lab.at(p2)).await.as_deref(), Some("b0"), "the other service still forwards");

    lab.c.delete_load_balancer(lab.lb).await.unwrap();
    wait_for("the deleted NLB's port to close", PATIENCE, || async { refused(lab.at(p2)).await.then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_membership_changes_add_and_remove_backends() {
    let lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;

    lab.c.scale_instance_pool(lab.pool, 3).await.unwrap();
    let grown = wait_for("a third running member", PATIENCE, || async {
        let m = lab.members().await;
        (m.len() == 3).then_some(m)
    })
    .await;
    let newcomer = *grown.iter().find(|ip| !members.contains(ip)).expect("a new member");
    let _third = Echo::start("b2", SocketAddr::from((newcomer, target))).await;
    lab.wait_health(svc, &all(&grown, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 6, &["b0", "b1", "b2"]).await;

    // A stopped member is no backend any more.
    let filter = InstanceFilter { manager_id: Some(lab.pool), ..Default::default() };
    let first = lab.c.list_instances(&filter).await.unwrap().into_iter().find(|i| i.public_ip == Some(members[0]));
    lab.c.stop_instance(first.expect("the first member").id).await.unwrap();
    lab.wait_health(svc, &all(&grown[1..], HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b1", "b2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_back_after_a_restart() {
    let mut lab = Lab::start(2).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;

    lab.zone.restart();
    lab.c = lab.zone.client().await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    wait_reaching(lab.at(port), 4, &["b0", "b1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_retried_without_stopping_the_zone() {
    let lab = Lab::start(1).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let squatter = Echo::start("squatter", lab.at(port)).await;
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    lab.wait_health(svc, &all(&members, HealthStatus::Success)).await;
    assert_eq!(hello(lab.at(port)).await.as_deref(), Some("squatter"), "the port is someone else's");
    assert!(lab.c.list_load_balancers().await.is_ok(), "the zone still answers");

    drop(squatter);
    wait_reaching(lab.at(port), 2, &["b0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_can_be_turned_off() {
    let mut args = zone_args();
    args.push("--nlb-dataplane=false".into());
    let lab = Lab::start_with(1, args).await;
    let members = lab.members().await;
    let target = free_port(members[0]);
    let _servers = echoes(&members, target).await;
    let port = free_port(lab.ip);
    let svc = lab.add(service("web", lab.pool, port, target, Strategy::RoundRobin)).await;
    let stored = lab.c.get_load_balancer_service(lab.lb, svc).await.unwrap();
    assert_eq!(stored.healthcheck_status, None, "no data plane, no health to report");
    assert!(refused(lab.at(port)).await, "nothing listens");
}
