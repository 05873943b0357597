//! What the data plane should be doing, derived from the zone's state alone:
//! which NLB services listen where, which backends they forward to and how
//! those are checked. Pure, so the rules are tested without sockets; the
//! supervisor turns the difference between two plans into socket changes.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use orchestrator::model::{
    HealthcheckMode, InstanceState, LoadBalancer, LoadBalancerService, LoadBalancerServiceState, LoadBalancerState,
    ManagerType, Protocol, Strategy,
};
use uuid::Uuid;

use crate::world::{World, ZoneState};

/// Healthcheck interval when the service sets none (the spec's default), in seconds.
const DEFAULT_INTERVAL_S: u64 = 10;
/// Healthcheck timeout when the service sets none (the spec's default), in seconds.
const DEFAULT_TIMEOUT_S: u64 = 2;
/// Consecutive failures before a backend is out when the service sets none:
/// the spec has no default; 1 is the Exoscale CCM's.
const DEFAULT_RETRIES: u32 = 1;

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP: connections are proxied.
    Tcp,
    /// UDP: datagrams are relayed per client address.
    Udp,
}

impl Transport {
    /// The wire name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Where a service listens; a change of it means a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bind {
    /// The NLB's address and the service's port.
    pub addr: SocketAddrV4,
    /// TCP or UDP.
    pub transport: Transport,
}

/// How a service picks a backend for a new connection or UDP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The next healthy backend, in turn.
    RoundRobin,
    /// The healthy backend the client's IP hashes to (`source-hash`, and
    /// `maglev-hash`, which is the same promise: one client, one backend,
    /// little reshuffling when the set changes).
    SourceHash,
}

/// One backend: a running member of the service's instance pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    /// The instance.
    pub instance: Uuid,
    /// Its public IPv4, where traffic and checks go.
    pub ip: Ipv4Addr,
}

/// Everything a listener needs to forward; swapped in place on updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The NLB, for logs.
    pub lb: Uuid,
    /// The service: the key of its backends' health.
    pub service: Uuid,
    /// How to pick among healthy backends.
    pub pick: Pick,
    /// Port on the backends.
    pub target_port: u16,
    /// Every backend, healthy or not, oldest instance first.
    pub backends: Vec<Backend>,
}

/// What a health check does to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The TCP connection is accepted.
    Tcp,
    /// `GET uri` answers 2xx.
    Http {
        /// Path (and query) asked for.
        uri: String,
    },
    /// `GET uri` over TLS answers 2xx; the certificate is not verified.
    Https {
        /// Path (and query) asked for.
        uri: String,
        /// Server name sent; the backend's IP when none.
        sni: Option<String>,
    },
}

/// A service's health check, in the API's units (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked.
    pub probe: Probe,
    /// Port probed on each backend (not necessarily the target port).
    pub port: u16,
    /// Seconds between the starts of two checks.
    pub interval_s: u64,
    /// Seconds one check may take.
    pub timeout_s: u64,
    /// Consecutive failures that make a healthy backend unhealthy.
    pub retries: u32,
}

/// One service as the data plane runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    /// Where it listens.
    pub bind: Bind,
    /// Where it forwards.
    pub route: Route,
    /// How its backends are checked.
    pub check: Check,
}

/// Every service that should be listening now, by service id, in every zone.
pub fn desired(world: &World) -> BTreeMap<Uuid, ServicePlan> {
    let mut out = BTreeMap::new();
    for zone in world.zones.values() {
        for lb in zone.load_balancers.values() {
            for svc in &lb.services {
                if let Some(plan) = service_plan(zone, lb, svc) {
                    out.insert(svc.id, plan);
                }
            }
        }
    }
    out
}

/// The plan of one service, or `None` when it does not listen: its NLB is not
/// running or has no address yet, the service is being created or deleted,
/// or (never through the API, whose spec requires them) a field is missing.
pub fn service_plan(zone: &ZoneState, lb: &LoadBalancer, svc: &LoadBalancerService) -> Option<ServicePlan> {
    if lb.state.as_ref().is_some_and(|s| *s != LoadBalancerState::Running) {
        return None;
    }
    let serving =
        matches!(svc.state, None | Some(LoadBalancerServiceState::Running) | Some(LoadBalancerServiceState::Updating));
    if !serving {
        return None;
    }
    let spec = &svc.spec;
    let port = u16::try_from(spec.port?).ok()?;
    let target_port = u16::try_from(spec.target_port?).ok()?;
    let transport = match spec.protocol.as_ref()? {
        Protocol::Tcp => Transport::Tcp,
        Protocol::Udp => Transport::Udp,
        Protocol::Unknown(_) => return None,
    };
    let pick = match spec.strategy.as_ref().unwrap_or(&Strategy::RoundRobin) {
        Strategy::SourceHash | Strategy::MaglevHash => Pick::SourceHash,
        Strategy::RoundRobin | Strategy::Unknown(_) => Pick::RoundRobin,
    };
    let hc = spec.healthcheck.clone().unwrap_or_default();
    let uri = || hc.uri.clone().unwrap_or_else(|| "/".to_owned());
    let probe = match hc.mode.as_ref().unwrap_or(&HealthcheckMode::Tcp) {
        HealthcheckMode::Http => Probe::Http { uri: uri() },
        HealthcheckMode::Https => Probe::Https { uri: uri(), sni: hc.tls_sni.clone() },
        HealthcheckMode::Tcp | HealthcheckMode::Unknown(_) => Probe::Tcp,
    };
    let check = Check {
        probe,
        port: hc.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(target_port),
        interval_s: hc.interval.and_then(|s| u64::try_from(s).ok()).unwrap_or(DEFAULT_INTERVAL_S).max(1),
        timeout_s: hc.timeout.and_then(|s| u64::try_from(s).ok()).unwrap_or(DEFAULT_TIMEOUT_S).max(1),
        retries: hc.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(DEFAULT_RETRIES).max(1),
    };
    let route =
        Route { lb: lb.id, service: svc.id, pick, target_port, backends: backends(zone, spec.instance_pool?.id) };
    Some(ServicePlan { bind: Bind { addr: SocketAddrV4::new(lb.ip?, port), transport }, route, check })
}

/// The running members of `pool` that have a public IPv4, oldest first (so
/// round-robin goes round in a stable order).
pub fn backends(zone: &ZoneState, pool: Uuid) -> Vec<Backend> {
    let mut members: Vec<_> = zone
        .instances
        .values()
        .filter(|r| r.instance.state == InstanceState::Running)
        .filter(|r| r.instance.manager.as_ref().is_some_and(|m| m.id == pool && m.kind == ManagerType::InstancePool))
        .filter_map(|r| Some((r.seq, Backend { instance: r.instance.id, ip: r.instance.public_ip? })))
        .collect();
    members.sort_by_key(|(seq, _)| *seq);
    members.into_iter().map(|(_, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::InstanceRec;
    use orchestrator::model::{Healthcheck, Instance, LoadBalancerServiceSpec, LoadBalancerSpec, Manager, Ref};

    fn member(pool: Uuid, seq: u64, ip: [u8; 4], state: InstanceState) -> InstanceRec {
        let instance: Instance = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(), "name": format!("m{seq}"), "state": state.as_str(),
            "instance-type": {"id": Uuid::nil()}, "public-ip": Ipv4Addr::from(ip).to_string(),
        }))
        .expect("instance");
        let instance = Instance { manager: Some(Manager { id: pool, kind: ManagerType::InstancePool }), ..instance };
        InstanceRec { instance, seq, ready_at_ms: None, kubelet_not_ready: false }
    }

    fn nlb(pool: Uuid, svc: LoadBalancerServiceSpec) -> LoadBalancer {
        LoadBalancer {
            id: Uuid::new_v4(),
            state: Some(LoadBalancerState::Running),
            ip: Some(Ipv4Addr::new(127, 64, 0, 9)),
            services: vec![LoadBalancerService {
                id: Uuid::new_v4(),
                state: Some(LoadBalancerServiceState::Running),
                healthcheck_status: None,
                spec: LoadBalancerServiceSpec { instance_pool: Some(Ref::from(pool)), ..svc },
            }],
            created_at: None,
            spec: LoadBalancerSpec::default(),
        }
    }

    fn tcp_service() -> LoadBalancerServiceSpec {
        LoadBalancerServiceSpec {
            protocol: Some(Protocol::Tcp),
            strategy: Some(Strategy::MaglevHash),
            port: Some(8080),
            target_port: Some(30080),
            healthcheck: Some(Healthcheck { mode: Some(HealthcheckMode::Tcp), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn running_members_in_creation_order_are_the_backends() {
        let pool = Uuid::new_v4();
        let mut zone = ZoneState::default();
        for rec in [
            member(pool, 3, [127, 64, 0, 3], InstanceState::Running),
            member(pool, 1, [127, 64, 0, 1], InstanceState::Running),
            member(pool, 2, [127, 64, 0, 2], InstanceState::Stopped),
            member(Uuid::new_v4(), 0, [127, 64, 0, 4], InstanceState::Running),
        ] {
            zone.instances.insert(rec.instance.id, rec);
        }
        let ips: Vec<Ipv4Addr> = backends(&zone, pool).iter().map(|b| b.ip).collect();
        assert_eq!(ips, [Ipv4Addr::new(127, 64, 0, 1), Ipv4Addr::new(127, 64, 0, 3)]);
    }

    #[test]
    fn defaults_fill_what_the_healthcheck_leaves_out() {
        let pool = Uuid::new_v4();
        let lb = nlb(pool, tcp_service());
        let plan = service_plan(&ZoneState::default(), &lb, &lb.services[0]).expect("listens");
        assert_eq!(plan.bind, Bind { addr: "127.64.0.9:8080".parse().unwrap(), transport: Transport::Tcp });
        assert_eq!(plan.route.pick, Pick::SourceHash, "maglev-hash behaves as source-hash");
        assert_eq!(
            plan.check,
            Check { probe: Probe::Tcp, port: 30080, interval_s: 10, timeout_s: 2, retries: 1 },
            "the probe goes to the target port unless the healthcheck names one"
        );
    }

    #[test]
    fn http_checks_ask_for_the_uri_or_the_root() {
        let pool = Uuid::new_v4();
        let hc = Healthcheck { mode: Some(HealthcheckMode::Http), port: Some(9000), ..Default::default() };
        let lb = nlb(pool, LoadBalancerServiceSpec { healthcheck: Some(hc.clone()), ..tcp_service() });
        let plan = service_plan(&ZoneState::default(), &lb, &lb.services[0]).expect("listens");
        assert_eq!((plan.check.probe, plan.check.port), (Probe::Http { uri: "/".into() }, 9000));
        let hc = Healthcheck { uri: Some("/healthz".into()), ..hc };
        let lb = nlb(pool, LoadBalancerServiceSpec { healthcheck: Some(hc), ..tcp_service() });
        let plan = service_plan(&ZoneState::default(), &lb, &lb.services[0]).expect("listens");
        assert_eq!(plan.check.probe, Probe::Http { uri: "/healthz".into() });
    }

    #[test]
    fn nothing_listens_before_the_nlb_runs_or_while_the_service_is_created_or_deleted() {
        let pool = Uuid::new_v4();
        let zone = ZoneState::default();
        let mut lb = nlb(pool, tcp_service());
        lb.state = Some(LoadBalancerState::Creating);
        assert!(service_plan(&zone, &lb, &lb.services[0]).is_none());
        lb.state = Some(LoadBalancerState::Running);
        for state in [LoadBalancerServiceState::Creating, LoadBalancerServiceState::Deleting] {
            lb.services[0].state = Some(state);
            assert!(service_plan(&zone, &lb, &lb.services[0]).is_none());
        }
        lb.services[0].state = Some(LoadBalancerServiceState::Updating);
        assert!(service_plan(&zone, &lb, &lb.services[0]).is_some(), "an update keeps it listening");
    }
}
