//! The NLB a Service asks for: its name, description and ownership labels, and
//! one NLB service per Service port, with the health check chosen from the
//! annotations or the Service's `externalTrafficPolicy`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use orchestrator::model::{
    Healthcheck, HealthcheckMode, LoadBalancerServiceSpec, LoadBalancerSpec, Protocol, Ref, Strategy,
};
use uuid::Uuid;

use super::annotations::{LbConfig, Mode};
use super::owner;

/// kube-proxy's health endpoint on every node (`--healthz-bind-address`).
pub const KUBE_PROXY_HEALTHZ_PORT: i64 = 10256;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// `port`.
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `nodePort` (absent with `allocateLoadBalancerNodePorts: false`).
    pub node_port: Option<i32>,
}

/// What the NLB depends on in a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `metadata.uid`.
    pub uid: String,
    /// `namespace/name`.
    pub key: String,
    /// `spec.ports`.
    pub ports: Vec<Port>,
    /// `externalTrafficPolicy: Local`.
    pub local_traffic: bool,
    /// `spec.healthCheckNodePort` (eTP Local).
    pub health_check_node_port: Option<i32>,
}

impl ServiceFacts {
    /// The facts of a Service.
    pub fn of(svc: &Service) -> Self {
        let spec = svc.spec.clone().unwrap_or_default();
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| Port {
                port: p.port,
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                node_port: p.node_port.filter(|n| *n > 0),
            })
            .collect();
        ServiceFacts {
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            key: format!(
                "{}/{}",
                svc.metadata.namespace.as_deref().unwrap_or_default(),
                svc.metadata.name.as_deref().unwrap_or_default()
            ),
            ports,
            local_traffic: spec.external_traffic_policy.as_deref() == Some("Local"),
            health_check_node_port: spec.health_check_node_port.filter(|p| *p > 0),
        }
    }
}

/// Controller-wide choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Without health-check annotations and with `externalTrafficPolicy: Cluster`,
    /// probe kube-proxy's `:10256/healthz` instead of the nodePort over TCP.
    pub kube_proxy_healthcheck: bool,
}

/// The NLB a Service asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Name, description and labels (ownership labels unless external).
    pub nlb: LoadBalancerSpec,
    /// One per Service port.
    pub services: Vec<LoadBalancerServiceSpec>,
}

/// The NLB service protocol of a Service port, if an NLB can carry it.
pub fn protocol(port: &Port) -> Option<Protocol> {
    match port.protocol.to_ascii_uppercase().as_str() {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The NLB service name of a Service port: `<uid>-<port>`, `-udp` appended for UDP.
pub fn service_name(uid: &str, port: i32, protocol: &Protocol) -> String {
    match protocol {
        Protocol::Udp => format!("{uid}-{port}-udp"),
        _ => format!("{uid}-{port}"),
    }
}

/// The default NLB name.
pub fn nlb_name(uid: &str) -> String {
    format!("k8s-{uid}")
}

fn strategy(cfg: &LbConfig) -> Strategy {
    match cfg.strategy {
        super::annotations::Strategy::RoundRobin => Strategy::RoundRobin,
        super::annotations::Strategy::SourceHash => Strategy::SourceHash,
        super::annotations::Strategy::MaglevHash => Strategy::MaglevHash,
    }
}

fn healthcheck(svc: &ServiceFacts, port: &Port, node_port: i32, cfg: &LbConfig, opts: Options) -> Healthcheck {
    let local_port = svc.local_traffic.then_some(svc.health_check_node_port).flatten();
    let explicit = cfg.mode.is_some() || cfg.healthcheck_port.is_some() || cfg.healthcheck_uri.is_some();
    let (mode, hc_port, default_uri) = if explicit {
        let mode = match cfg.mode.unwrap_or(Mode::Tcp) {
            Mode::Tcp => HealthcheckMode::Tcp,
            Mode::Http => HealthcheckMode::Http,
            Mode::Https => HealthcheckMode::Https,
        };
        let hc_port = cfg.healthcheck_port.map(i64::from).or(local_port.map(i64::from)).unwrap_or(node_port.into());
        (mode, hc_port, if local_port.is_some() { "/healthz" } else { "/" })
    } else if let Some(p) = local_port {
        // kube-proxy answers 200 on healthCheckNodePort only where the Service has local endpoints.
        (HealthcheckMode::Http, p.into(), "/healthz")
    } else if opts.kube_proxy_healthcheck || protocol(port) == Some(Protocol::Udp) {
        // A UDP nodePort cannot be probed over TCP; kube-proxy's health says whether the node forwards.
        (HealthcheckMode::Http, KUBE_PROXY_HEALTHZ_PORT, "/healthz")
    } else {
        (HealthcheckMode::Tcp, node_port.into(), "/")
    };
    let uri = match mode {
        HealthcheckMode::Tcp => None,
        _ => Some(cfg.healthcheck_uri.clone().unwrap_or_else(|| default_uri.to_owned())),
    };
    Healthcheck {
        mode: Some(mode),
        port: Some(hc_port),
        uri,
        interval: Some(cfg.interval.as_secs() as i64),
        timeout: Some(cfg.timeout.as_secs() as i64),
        retries: Some(cfg.retries.into()),
        tls_sni: None,
    }
}

/// The NLB for `svc`, targeting instance pool `pool`; an error says why the
/// Service cannot be served (naming the port).
pub fn desired(
    svc: &ServiceFacts,
    cfg: &LbConfig,
    pool: Uuid,
    cluster: Uuid,
    opts: Options,
) -> Result<Desired, String> {
    if svc.ports.is_empty() {
        return Err("the Service has no ports".into());
    }
    let single = svc.ports.len() == 1;
    let mut services = Vec::new();
    for (i, port) in svc.ports.iter().enumerate() {
        let Some(proto) = protocol(port) else {
            return Err(format!(
                "spec.ports[{i}]: protocol {} is not supported by Network Load Balancers (TCP or UDP)",
                port.protocol
            ));
        };
        let Some(node_port) = port.node_port else {
            return Err(format!(
                "spec.ports[{i}]: no nodePort (allocateLoadBalancerNodePorts: false?); the NLB forwards to nodePorts"
            ));
        };
        let name = match (&cfg.service_name, single) {
            (Some(n), true) => n.clone(),
            _ => service_name(&svc.uid, port.port, &proto),
        };
        services.push(LoadBalancerServiceSpec {
            name: Some(name),
            description: if single { cfg.service_description.clone() } else { None },
            instance_pool: Some(Ref::from(pool)),
            protocol: Some(proto),
            strategy: Some(strategy(cfg)),
            port: Some(port.port.into()),
            target_port: Some(node_port.into()),
            healthcheck: Some(healthcheck(svc, port, node_port, cfg, opts)),
        });
    }
    let labels: Option<BTreeMap<String, String>> = (!cfg.external).then(|| owner::labels(cluster, &svc.uid, &svc.key));
    let nlb = LoadBalancerSpec {
        name: Some(cfg.name.clone().unwrap_or_else(|| nlb_name(&svc.uid))),
        description: cfg.description.clone(),
        labels,
    };
    Ok(Desired { nlb, services })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::annotations::{PREFIX, parse};

    fn facts(ports: &[(i32, &str, i32)]) -> ServiceFacts {
        ServiceFacts {
            uid: "u1".into(),
            key: "default/web".into(),
            ports: ports
                .iter()
                .map(|(p, proto, np)| Port { port: *p, protocol: proto.to_string(), node_port: Some(*np) })
                .collect(),
            local_traffic: false,
            health_check_node_port: None,
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> LbConfig {
        parse(&pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()).unwrap()
    }

    fn hc(d: &Desired, i: usize) -> (HealthcheckMode, i64, Option<&str>) {
        let h = d.services[i].healthcheck.as_ref().unwrap();
        (h.mode.clone().unwrap(), h.port.unwrap(), h.uri.as_deref())
    }

    #[test]
    fn one_nlb_service_per_port_targeting_node_ports() {
        let pool = Uuid::new_v4();
        let d = desired(
            &facts(&[(80, "TCP", 30080), (53, "UDP", 30053)]),
            &cfg(&[]),
            pool,
            Uuid::nil(),
            Options::default(),
        )
        .unwrap();
        assert_eq!(d.nlb.name.as_deref(), Some("k8s-u1"));
        assert_eq!(d.nlb.labels.as_ref().unwrap()[owner::SERVICE_UID], "u1");
        let s: Vec<_> = d.services.iter().map(|s| (s.name.clone().unwrap(), s.port, s.target_port)).collect();
        assert_eq!(s, vec![("u1-80".into(), Some(80), Some(30080)), ("u1-53-udp".into(), Some(53), Some(30053))]);
        assert_eq!(d.services[0].instance_pool, Some(Ref::from(pool)));
        assert_eq!(hc(&d, 0), (HealthcheckMode::Tcp, 30080, None));
        assert_eq!(hc(&d, 1), (HealthcheckMode::Http, 10256, Some("/healthz")), "UDP is checked through kube-proxy");
    }

    #[test]
    fn health_checks_follow_annotations_then_traffic_policy_then_the_flag() {
        let mut f = facts(&[(80, "TCP", 30080)]);
        let kp = Options { kube_proxy_healthcheck: true };
        let d = desired(&f, &cfg(&[]), Uuid::nil(), Uuid::nil(), kp).unwrap();
        assert_eq!(hc(&d, 0), (HealthcheckMode::Http, 10256, Some("/healthz")));
        f.local_traffic = true;
        f.health_check_node_port = Some(31999);
        let d = desired(&f, &cfg(&[]), Uuid::nil(), Uuid::nil(), kp).unwrap();
        assert_eq!(hc(&d, 0), (HealthcheckMode::Http, 31999, Some("/healthz")));
        let d = desired(&f, &cfg(&[("service-healthcheck-mode", "tcp")]), Uuid::nil(), Uuid::nil(), kp).unwrap();
        assert_eq!(hc(&d, 0), (HealthcheckMode::Tcp, 31999, None));
        let c = cfg(&[
            ("service-healthcheck-mode", "http"),
            ("service-healthcheck-port", "8080"),
            ("service-healthcheck-uri", "/up"),
        ]);
        let d = desired(&f, &c, Uuid::nil(), Uuid::nil(), kp).unwrap();
        assert_eq!(hc(&d, 0), (HealthcheckMode::Http, 8080, Some("/up")));
        let h = d.services[0].healthcheck.as_ref().unwrap();
        assert_eq!((h.interval, h.timeout, h.retries), (Some(10), Some(5), Some(1)));
    }

    #[test]
    fn names_descriptions_and_external() {
        let c =
            cfg(&[("service-name", "http"), ("service-description", "web"), ("name", "shop"), ("description", "d")]);
        let d = desired(&facts(&[(80, "TCP", 30080)]), &c, Uuid::nil(), Uuid::nil(), Options::default()).unwrap();
        assert_eq!((d.nlb.name.as_deref(), d.nlb.description.as_deref()), (Some("shop"), Some("d")));
        assert_eq!((d.services[0].name.as_deref(), d.services[0].description.as_deref()), (Some("http"), Some("web")));
        // With two ports the per-service name would collide: ignored, as by the Exoscale CCM.
        let d = desired(&facts(&[(80, "TCP", 1), (443, "TCP", 2)]), &c, Uuid::nil(), Uuid::nil(), Options::default())
            .unwrap();
        assert_eq!(d.services[1].name.as_deref(), Some("u1-443"));
        let c = cfg(&[("external", "true"), ("id", &Uuid::new_v4().to_string())]);
        let d = desired(&facts(&[(80, "TCP", 1)]), &c, Uuid::nil(), Uuid::nil(), Options::default()).unwrap();
        assert_eq!(d.nlb.labels, None, "an external NLB's labels are not ours to set");
    }

    #[test]
    fn unservable_ports_are_explained() {
        let e = desired(&facts(&[(80, "SCTP", 1)]), &cfg(&[]), Uuid::nil(), Uuid::nil(), Options::default());
        assert!(e.unwrap_err().contains("spec.ports[0]: protocol SCTP"));
        let mut f = facts(&[(80, "TCP", 1)]);
        f.ports[0].node_port = None;
        let e = desired(&f, &cfg(&[]), Uuid::nil(), Uuid::nil(), Options::default());
        assert!(e.unwrap_err().contains("no nodePort"));
    }
}
