//! The smallest set of orchestrator writes that turns the live NLB into the
//! desired one: only changed fields are sent, a strategy or health-check change
//! updates the NLB service in place (same NLB, same IP), and only a changed
//! instance pool (which the API cannot update) replaces an NLB service.

use orchestrator::model::{
    LoadBalancer, LoadBalancerService, LoadBalancerServiceSpec, LoadBalancerSpec, Protocol, UpdateLoadBalancerService,
};
use uuid::Uuid;

use super::desired::Desired;

/// One orchestrator write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the NLB.
    Create(LoadBalancerSpec),
    /// Change the NLB's name, description or labels (only the fields set).
    Update(LoadBalancerSpec),
    /// Clear the NLB's description.
    ResetDescription,
    /// Remove an NLB service.
    DeleteService(Uuid),
    /// Change an NLB service (only the fields set).
    UpdateService(Uuid, UpdateLoadBalancerService),
    /// Clear an NLB service's description.
    ResetServiceDescription(Uuid),
    /// Add an NLB service.
    AddService(LoadBalancerServiceSpec),
    /// Delete the NLB.
    Delete,
}

impl Step {
    /// A short description for logs and events.
    pub fn describe(&self) -> String {
        match self {
            Step::Create(s) => format!("create NLB {}", s.name.as_deref().unwrap_or_default()),
            Step::Update(_) => "update NLB".into(),
            Step::ResetDescription => "clear NLB description".into(),
            Step::DeleteService(id) => format!("delete NLB service {id}"),
            Step::UpdateService(id, _) => format!("update NLB service {id}"),
            Step::ResetServiceDescription(id) => format!("clear description of NLB service {id}"),
            Step::AddService(s) => format!("add NLB service {}", s.name.as_deref().unwrap_or_default()),
            Step::Delete => "delete NLB".into(),
        }
    }
}

type Key = (i64, Protocol);

fn key(s: &LoadBalancerServiceSpec) -> Option<Key> {
    Some((s.port?, s.protocol.clone().unwrap_or(Protocol::Tcp)))
}

/// The fields of `want` that `live` lacks; `None` when nothing differs.
fn service_change(live: &LoadBalancerServiceSpec, want: &LoadBalancerServiceSpec) -> Option<UpdateLoadBalancerService> {
    let mut change = UpdateLoadBalancerService::default();
    let mut any = false;
    macro_rules! diff {
        ($($f:ident),*) => { $(if want.$f.is_some() && want.$f != live.$f { change.$f = want.$f.clone(); any = true; })* };
    }
    diff!(name, description, protocol, strategy, target_port, healthcheck);
    any.then_some(change)
}

/// Whether an NLB service on a shared (external) NLB was made for this Service:
/// its name carries the Service UID.
pub fn made_for(svc: &LoadBalancerService, uid: &str) -> bool {
    svc.spec.name.as_deref().is_some_and(|n| n.starts_with(&format!("{uid}-")))
}

/// Whether an NLB service was made for another Service: its name starts with
/// another Service's UID. Such a service (on an NLB shared through `external`)
/// is never changed, deleted or taken over.
pub fn made_for_another(svc: &LoadBalancerService, uid: &str) -> bool {
    let name = svc.spec.name.as_deref().unwrap_or_default();
    let prefix = name.get(..36).filter(|_| name[36..].starts_with('-'));
    prefix.is_some_and(|p| p != uid && Uuid::parse_str(p).is_ok())
}

/// The instance pool this Service's NLB services on `live` target, when they
/// agree on one.
pub fn current_pool(live: &LoadBalancer, external: bool, uid: &str) -> Option<Uuid> {
    let mut pools = live
        .services
        .iter()
        .filter(|s| made_for(s, uid) || (!external && !made_for_another(s, uid)))
        .filter_map(|s| s.spec.instance_pool.as_ref().map(|p| p.id));
    let first = pools.next()?;
    pools.all(|p| p == first).then_some(first)
}

/// The ports of `want` that `live` serves for another Service already: why
/// each cannot be ours. Adding ours next to theirs would fail or steal them.
pub fn port_conflicts(want: &Desired, live: Option<&LoadBalancer>, uid: &str) -> Vec<String> {
    let Some(live) = live else { return Vec::new() };
    want.services
        .iter()
        .filter_map(|spec| {
            let theirs = live.services.iter().find(|s| made_for_another(s, uid) && key(&s.spec) == key(spec))?;
            Some(format!(
                "port {}/{:?} of NLB {} is served by NLB service {} of another Service",
                spec.port.unwrap_or_default(),
                spec.protocol.clone().unwrap_or(Protocol::Tcp),
                live.id,
                theirs.spec.name.as_deref().unwrap_or_default()
            ))
        })
        .collect()
}

/// The writes that make `live` (absent: not created yet) match `want`. On an
/// external NLB the NLB itself is never changed, and only NLB services of this
/// Service's ports (or made for it earlier) are touched; on any NLB, services
/// made for another Service are left alone.
pub fn converge(want: &Desired, live: Option<&LoadBalancer>, external: bool, uid: &str) -> Vec<Step> {
    let Some(live) = live else {
        let mut steps = vec![Step::Create(want.nlb.clone())];
        steps.extend(want.services.iter().cloned().map(Step::AddService));
        return steps;
    };
    let mut steps = Vec::new();
    if !external {
        let mut change = LoadBalancerSpec::default();
        if want.nlb.name.is_some() && want.nlb.name != live.spec.name {
            change.name = want.nlb.name.clone();
        }
        if want.nlb.description.is_some() && want.nlb.description != live.spec.description {
            change.description = want.nlb.description.clone();
        }
        if let Some(ours) = &want.nlb.labels {
            let mut labels = live.spec.labels.clone().unwrap_or_default();
            if ours.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                labels.extend(ours.clone());
                change.labels = Some(labels);
            }
        }
        if change != LoadBalancerSpec::default() {
            steps.push(Step::Update(change));
        }
        if want.nlb.description.is_none() && live.spec.description.is_some() {
            steps.push(Step::ResetDescription);
        }
    }
    let wanted: Vec<Option<Key>> = want.services.iter().map(key).collect();
    let (mut deletes, mut updates, mut adds) = (Vec::new(), Vec::new(), Vec::new());
    let candidates: Vec<&LoadBalancerService> = live.services.iter().filter(|s| !made_for_another(s, uid)).collect();
    for svc in &candidates {
        let ours = !external || made_for(svc, uid) || wanted.contains(&key(&svc.spec));
        if ours && !wanted.contains(&key(&svc.spec)) {
            deletes.push(Step::DeleteService(svc.id));
        }
    }
    for spec in &want.services {
        match candidates.iter().find(|s| key(&s.spec) == key(spec)) {
            None => adds.push(Step::AddService(spec.clone())),
            Some(svc) if svc.spec.instance_pool != spec.instance_pool => {
                deletes.push(Step::DeleteService(svc.id));
                adds.push(Step::AddService(spec.clone()));
            }
            Some(svc) => {
                if let Some(change) = service_change(&svc.spec, spec) {
                    updates.push(Step::UpdateService(svc.id, change));
                }
                if spec.description.is_none() && svc.spec.description.is_some() {
                    updates.push(Step::ResetServiceDescription(svc.id));
                }
            }
        }
    }
    // Deletions first: an added service may reuse a freed name.
    steps.extend(deletes);
    steps.extend(updates);
    steps.extend(adds);
    steps
}

/// The writes that remove a Service's NLB: its NLB services, then the NLB if it
/// is owned (not external) and nothing else is left on it.
pub fn teardown(live: &LoadBalancer, ports: &[(i64, Protocol)], external: bool, uid: &str) -> Vec<Step> {
    let ours = |s: &LoadBalancerService| {
        made_for(s, uid) || (!made_for_another(s, uid) && key(&s.spec).is_some_and(|k| ports.contains(&k)))
    };
    let mut steps: Vec<Step> = live.services.iter().filter(|s| ours(s)).map(|s| Step::DeleteService(s.id)).collect();
    if !external && live.services.iter().all(ours) {
        steps.push(Step::Delete);
    }
    steps
}

#[cfg(test)]
mod tests {
    use orchestrator::model::{Healthcheck, HealthcheckMode, Ref, Strategy};

    use super::*;

    fn spec(port: i64, pool: Uuid) -> LoadBalancerServiceSpec {
        LoadBalancerServiceSpec {
            name: Some(format!("u1-{port}")),
            description: None,
            instance_pool: Some(Ref::from(pool)),
            protocol: Some(Protocol::Tcp),
            strategy: Some(Strategy::RoundRobin),
            port: Some(port),
            target_port: Some(30000 + port),
            healthcheck: Some(Healthcheck {
                mode: Some(HealthcheckMode::Tcp),
                port: Some(30000 + port),
                ..Default::default()
            }),
        }
    }

    fn want(ports: &[i64], pool: Uuid) -> Desired {
        Desired {
            nlb: LoadBalancerSpec { name: Some("k8s-u1".into()), description: None, labels: None },
            services: ports.iter().map(|p| spec(*p, pool)).collect(),
        }
    }

    fn live_of(d: &Desired) -> LoadBalancer {
        LoadBalancer {
            id: Uuid::new_v4(),
            state: None,
            ip: None,
            services: d
                .services
                .iter()
                .map(|s| LoadBalancerService {
                    id: Uuid::new_v4(),
                    state: None,
                    healthcheck_status: None,
                    spec: s.clone(),
                })
                .collect(),
            created_at: None,
            spec: d.nlb.clone(),
        }
    }

    #[test]
    fn nothing_to_do_when_live_matches() {
        let d = want(&[80, 443], Uuid::new_v4());
        assert_eq!(converge(&d, Some(&live_of(&d)), false, "u1"), vec![]);
    }

    #[test]
    fn creates_then_adds_every_port() {
        let d = want(&[80, 443], Uuid::new_v4());
        let steps = converge(&d, None, false, "u1");
        assert!(matches!(steps.as_slice(), [Step::Create(_), Step::AddService(_), Step::AddService(_)]), "{steps:?}");
    }

    #[test]
    fn strategy_and_health_check_changes_are_in_place_updates_of_those_fields_only() {
        let pool = Uuid::new_v4();
        let live = live_of(&want(&[80], pool));
        let mut d = want(&[80], pool);
        d.services[0].strategy = Some(Strategy::SourceHash);
        d.services[0].healthcheck.as_mut().unwrap().interval = Some(20);
        let steps = converge(&d, Some(&live), false, "u1");
        let [Step::UpdateService(id, change)] = steps.as_slice() else { panic!("{steps:?}") };
        assert_eq!(*id, live.services[0].id);
        assert_eq!(change.strategy, Some(Strategy::SourceHash));
        assert_eq!(change.healthcheck.as_ref().unwrap().interval, Some(20));
        assert_eq!((change.port, change.target_port, change.name.as_ref()), (None, None, None));
    }

    #[test]
    fn ports_added_and_removed_and_pool_changes_replace() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let live = live_of(&want(&[80, 8080], a));
        let steps = converge(&want(&[80, 443], a), Some(&live), false, "u1");
        assert_eq!(steps, vec![Step::DeleteService(live.services[1].id), Step::AddService(spec(443, a))]);
        let steps = converge(&want(&[80, 8080], b), Some(&live), false, "u1");
        assert_eq!(steps.len(), 4, "{steps:?}");
        assert!(matches!(steps[..2], [Step::DeleteService(_), Step::DeleteService(_)]));
    }

    #[test]
    fn external_nlbs_keep_their_spec_and_foreign_services() {
        let pool = Uuid::new_v4();
        let mut live = live_of(&want(&[80], pool));
        live.spec.name = Some("shared".into());
        let mut foreign = spec(22, pool);
        foreign.name = Some("ssh".into());
        live.services.push(LoadBalancerService {
            id: Uuid::new_v4(),
            state: None,
            healthcheck_status: None,
            spec: foreign,
        });
        assert_eq!(converge(&want(&[80], pool), Some(&live), true, "u1"), vec![]);
        // Port 80 moved to 81: our old service goes, the foreign one stays.
        let steps = converge(&want(&[81], pool), Some(&live), true, "u1");
        assert_eq!(steps, vec![Step::DeleteService(live.services[0].id), Step::AddService(spec(81, pool))]);
        let down = teardown(&live, &[(81, Protocol::Tcp)], true, "u1");
        assert_eq!(down, vec![Step::DeleteService(live.services[0].id)], "never the NLB, never foreign services");
    }

    #[test]
    fn teardown_deletes_an_owned_nlb_only_when_nothing_else_is_on_it() {
        let pool = Uuid::new_v4();
        let live = live_of(&want(&[80], pool));
        assert_eq!(
            teardown(&live, &[(80, Protocol::Tcp)], false, "u1"),
            vec![Step::DeleteService(live.services[0].id), Step::Delete]
        );
        let mut shared = live.clone();
        let mut other = spec(22, pool);
        other.name = Some("ssh".into());
        shared.services.push(LoadBalancerService {
            id: Uuid::new_v4(),
            state: None,
            healthcheck_status: None,
            spec: other,
        });
        assert_eq!(
            teardown(&shared, &[(80, Protocol::Tcp)], false, "u1"),
            vec![Step::DeleteService(live.services[0].id)]
        );
    }

    #[test]
    fn services_of_another_service_sharing_the_nlb_are_never_touched() {
        let (pool, other) = (Uuid::new_v4(), Uuid::new_v4());
        let d = want(&[80], pool);
        let mut live = live_of(&d);
        let mut theirs = spec(443, pool);
        theirs.name = Some(format!("{other}-443"));
        live.services.push(LoadBalancerService {
            id: Uuid::new_v4(),
            state: None,
            healthcheck_status: None,
            spec: theirs,
        });
        assert_eq!(converge(&d, Some(&live), false, "u1"), vec![], "the owner keeps the sharer's service");
        assert_eq!(
            teardown(&live, &[(80, Protocol::Tcp)], false, "u1"),
            vec![Step::DeleteService(live.services[0].id)]
        );
        assert!(port_conflicts(&d, Some(&live), "u1").is_empty());
        let mut elsewhere = live.clone();
        elsewhere.services[1].spec.instance_pool = Some(Ref::from(Uuid::new_v4()));
        assert_eq!(current_pool(&elsewhere, false, "u1"), Some(pool), "the other Service's pool does not count");
        // A sharer asking for the port the other Service serves: reported, never taken over.
        let clash = want(&[443], pool);
        let why = port_conflicts(&clash, Some(&live), "u1");
        assert!(why.len() == 1 && why[0].contains(&format!("{other}-443")), "{why:?}");
        let steps = converge(&clash, Some(&live), true, "u1");
        assert!(
            steps.iter().all(
                |s| !matches!(s, Step::UpdateService(id, _) | Step::DeleteService(id) if *id == live.services[1].id)
            ),
            "{steps:?}"
        );
        let ours =
            LoadBalancerService { id: Uuid::new_v4(), state: None, healthcheck_status: None, spec: spec(80, pool) };
        assert!(!made_for_another(&ours, "u1"));
    }

    #[test]
    fn only_our_label_keys_are_compared() {
        let pool = Uuid::new_v4();
        let mut d = want(&[80], pool);
        d.nlb.labels = Some([("k8s-service-uid".to_string(), "u1".to_string())].into());
        let mut live = live_of(&d);
        live.spec.labels.as_mut().unwrap().insert("team".into(), "web".into());
        assert_eq!(converge(&d, Some(&live), false, "u1"), vec![]);
        live.spec.labels = None;
        let steps = converge(&d, Some(&live), false, "u1");
        assert!(matches!(&steps[..], [Step::Update(s)] if s.labels.as_ref().unwrap()["k8s-service-uid"] == "u1"));
    }
}
