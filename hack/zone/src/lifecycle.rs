//! What happens over time: operations complete, pools converge on their size,
//! instances boot. Every function here runs inside a write transaction.

use jiff::Timestamp;
use orchestrator::model::{
    Instance, InstancePool, InstancePoolState, InstanceState, LoadBalancer, LoadBalancerServiceState,
    LoadBalancerState, Manager, ManagerType, Operation, OperationReason, OperationState, PrivateNetworkAttachment, Ref,
    Reference, SksClusterState, SksNodepoolState,
};
use rand::Rng as _;
use uuid::Uuid;

use crate::app::Config;
use crate::ipam;
use crate::upgrades;
use crate::world::{ClusterRec, Completion, InstanceRec, NodepoolRec, OpRec, Target, Tx};

/// Now, in UNIX milliseconds.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// Now, to the second, as the API reports creation times.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("the current time is representable")
}

/// A new `pending` operation on `reference` (with the API path of the resource).
pub fn operation(command: &str, reference: Option<(Uuid, String)>) -> Operation {
    Operation {
        id: Uuid::new_v4(),
        state: OperationState::Pending,
        reference: reference.map(|(id, link)| Reference {
            id: Some(id),
            link: Some(format!("/v2{link}")),
            command: Some(command.to_owned()),
        }),
        message: None,
        reason: None,
    }
}

/// Records an operation on `reference` (with the API path of the resource);
/// with no configured delay it completes at once and is returned as `success`.
pub fn start_operation(
    tx: &mut Tx<'_>,
    config: &Config,
    zone: &str,
    command: &str,
    reference: Option<(Uuid, String)>,
    completion: Completion,
) -> Operation {
    let mut op = operation(command, reference);
    let delay = config.operation_delay.as_millis() as i64;
    if delay == 0 {
        complete(tx, config, zone, &completion);
        op.state = OperationState::Success;
    }
    tx.put(zone, OpRec { op: op.clone(), due_ms: now_ms() + delay, completion });
    op
}

/// What moving a due operation on led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It is done: `success`.
    Done,
    /// It failed: `failure`, with why.
    Failed(OperationReason, String),
    /// It goes on; due again at this time (UNIX ms).
    Until(i64),
}

/// Records `outcome` on an operation.
pub fn settle(rec: &mut OpRec, outcome: Outcome) {
    match outcome {
        Outcome::Done => rec.op.state = OperationState::Success,
        Outcome::Failed(reason, message) => {
            rec.op.state = OperationState::Failure;
            rec.op.reason = Some(reason);
            rec.op.message = Some(message);
        }
        Outcome::Until(due) => rec.due_ms = due,
    }
}

/// Completes every pending operation that is due and boots every instance
/// whose start delay is over; returns whether anything changed.
pub fn tick(tx: &mut Tx<'_>, config: &Config, now: i64) -> bool {
    let mut changed = false;
    for zone in config.zones.clone() {
        let due: Vec<Uuid> = tx
            .zone(&zone)
            .operations
            .values()
            .filter(|o| o.op.state == OperationState::Pending && o.due_ms <= now)
            .map(|o| o.op.id)
            .collect();
        for id in due {
            let completion = tx.get::<OpRec>(&zone, id).map_or(Completion::Nothing, |o| o.completion.clone());
            let outcome = match completion {
                Completion::Upgrade(cluster, upgrade) => upgrades::advance(tx, config, &zone, cluster, upgrade, now),
                other => {
                    complete(tx, config, &zone, &other);
                    Outcome::Done
                }
            };
            tx.update::<OpRec>(&zone, id, |o| settle(o, outcome));
            changed = true;
        }
        let booted: Vec<Uuid> = tx
            .zone(&zone)
            .instances
            .values()
            .filter(|i| i.instance.state == InstanceState::Starting && i.ready_at_ms.is_some_and(|t| t <= now))
            .map(|i| i.instance.id)
            .collect();
        for id in booted {
            tx.update::<InstanceRec>(&zone, id, |i| {
                i.instance.state = InstanceState::Running;
                i.ready_at_ms = None;
            });
            changed = true;
        }
    }
    changed
}

/// Applies what completing an operation does.
pub fn complete(tx: &mut Tx<'_>, config: &Config, zone: &str, completion: &Completion) {
    match *completion {
        Completion::Nothing => {}
        Completion::InstanceState(id, ref state) => {
            let state = state.clone();
            tx.update::<InstanceRec>(zone, id, |i| i.instance.state = state);
        }
        Completion::ClusterVersion(id, ref version) => {
            let version = version.clone();
            tx.update::<ClusterRec>(zone, id, |c| {
                c.control_plane = crate::control_plane::at_version(&version);
                c.cluster.version = version;
                c.cluster.state = SksClusterState::Running;
            });
        }
        // Moved on by `tick`, component by component; never completed at once.
        Completion::Upgrade(..) => {}
        Completion::Activate(target) => activate(tx, zone, target),
        Completion::Remove(target) => remove(tx, config, zone, target),
    }
}

fn activate(tx: &mut Tx<'_>, zone: &str, target: Target) {
    match target {
        Target::Instance(id) => {
            tx.update::<InstanceRec>(zone, id, |i| {
                if i.instance.state == InstanceState::Starting && i.ready_at_ms.is_none() {
                    i.instance.state = InstanceState::Running;
                }
            });
        }
        Target::Pool(id) => {
            tx.update::<InstancePool>(zone, id, |p| p.state = InstancePoolState::Running);
        }
        Target::LoadBalancer(id) => {
            tx.update::<LoadBalancer>(zone, id, |lb| {
                lb.state = Some(LoadBalancerState::Running);
                for s in &mut lb.services {
                    s.state = Some(LoadBalancerServiceState::Running);
                }
            });
        }
        Target::LoadBalancerService(lb, svc) => {
            tx.update::<LoadBalancer>(zone, lb, |lb| {
                if let Some(s) = lb.services.iter_mut().find(|s| s.id == svc) {
                    s.state = Some(LoadBalancerServiceState::Running);
                }
            });
        }
        Target::Cluster(id) => {
            tx.update::<ClusterRec>(zone, id, |c| {
                // An upgrade started while the cluster was being created ends it `running` itself.
                if c.cluster.state != SksClusterState::Upgrading {
                    c.cluster.state = SksClusterState::Running;
                }
            });
        }
        Target::Nodepool(id) => {
            tx.update::<NodepoolRec>(zone, id, |n| n.nodepool.state = SksNodepoolState::Running);
        }
    }
}

fn remove(tx: &mut Tx<'_>, config: &Config, zone: &str, target: Target) {
    match target {
        Target::Instance(id) => {
            let manager = tx.remove::<InstanceRec>(zone, id).and_then(|i| i.instance.manager);
            // A pool replaces a member deleted behind its back, as the real one does.
            if let Some(Manager { id: pool, kind: ManagerType::InstancePool }) = manager {
                reconcile_pool(tx, config, zone, pool);
            }
        }
        Target::Pool(id) => remove_pool(tx, zone, id),
        Target::LoadBalancer(id) => {
            tx.remove::<LoadBalancer>(zone, id);
        }
        Target::LoadBalancerService(lb, svc) => {
            tx.update::<LoadBalancer>(zone, lb, |lb| lb.services.retain(|s| s.id != svc));
        }
        Target::Cluster(id) => {
            let nodepools: Vec<Uuid> =
                tx.zone(zone).nodepools.values().filter(|n| n.cluster_id == id).map(|n| n.nodepool.id).collect();
            for np in nodepools {
                remove_nodepool(tx, zone, np);
            }
            tx.remove::<ClusterRec>(zone, id);
        }
        Target::Nodepool(id) => remove_nodepool(tx, zone, id),
    }
}

fn remove_nodepool(tx: &mut Tx<'_>, zone: &str, id: Uuid) {
    if let Some(rec) = tx.remove::<NodepoolRec>(zone, id)
        && let Some(pool) = rec.nodepool.instance_pool
    {
        remove_pool(tx, zone, pool.id);
    }
}

fn remove_pool(tx: &mut Tx<'_>, zone: &str, id: Uuid) {
    for member in pool_members(tx, zone, id) {
        tx.remove::<InstanceRec>(zone, member);
    }
    tx.remove::<InstancePool>(zone, id);
}

/// The ids of a pool's members, oldest first.
pub fn pool_members(tx: &Tx<'_>, zone: &str, pool: Uuid) -> Vec<Uuid> {
    let mut members: Vec<&InstanceRec> = tx
        .zone(zone)
        .instances
        .values()
        .filter(|i| i.instance.manager.as_ref().is_some_and(|m| m.id == pool && m.kind == ManagerType::InstancePool))
        .collect();
    members.sort_by_key(|i| i.seq);
    members.into_iter().map(|i| i.instance.id).collect()
}

/// Creates or destroys members until the pool has `size` of them; the newest
/// go first on a scale-down.
pub fn reconcile_pool(tx: &mut Tx<'_>, config: &Config, zone: &str, pool_id: Uuid) {
    let Some(pool) = tx.get::<InstancePool>(zone, pool_id).cloned() else { return };
    if pool.state == InstancePoolState::Destroying {
        return;
    }
    let mut members = pool_members(tx, zone, pool_id);
    let size = usize::try_from(pool.size).unwrap_or(0);
    while members.len() > size {
        let newest = members.pop().expect("more members than size");
        tx.remove::<InstanceRec>(zone, newest);
    }
    while members.len() < size {
        let rec = new_member(tx, config, zone, &pool);
        members.push(rec.instance.id);
        tx.put(zone, rec);
    }
    let instances: Vec<Ref> = members.into_iter().map(Ref::from).collect();
    if pool.instances != instances {
        tx.update::<InstancePool>(zone, pool_id, |p| p.instances = instances);
    }
}

fn unique_name(tx: &Tx<'_>, zone: &str, prefix: &str) -> String {
    let mut rng = rand::rng();
    loop {
        let name = format!("{prefix}-{:05x}-{:05x}", rng.random_range(0..0x10_0000), rng.random_range(0..0x10_0000));
        if !tx.zone(zone).instances.values().any(|i| i.instance.name == name) {
            return name;
        }
    }
}

fn mac_address() -> String {
    let b: [u8; 5] = rand::rng().random();
    format!("06:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4])
}

/// The fields a new instance takes from whatever creates it.
pub struct InstanceTemplate {
    /// Name; generated from `prefix` when absent.
    pub name: Option<String>,
    /// Prefix of generated names.
    pub prefix: String,
    /// Everything else, as the instance will report it.
    pub base: Instance,
}

/// A new instance in `starting` state with fresh addresses.
pub fn new_instance(tx: &mut Tx<'_>, config: &Config, zone: &str, template: InstanceTemplate) -> InstanceRec {
    let name = template.name.unwrap_or_else(|| unique_name(tx, zone, &template.prefix));
    let meta = tx.meta_mut();
    let n = meta.next_ip;
    meta.next_ip += 1;
    let seq = meta.next_seq;
    meta.next_seq += 1;
    let delay = config.boot_delay.as_millis() as i64;
    let mut instance = template.base;
    instance.id = Uuid::new_v4();
    instance.name = name;
    instance.public_ip = Some(ipam::ipv4(n));
    instance.ipv6_address = Some(ipam::ipv6(n));
    instance.mac_address = Some(mac_address());
    instance.created_at = Some(now());
    instance.state = if delay == 0 { InstanceState::Running } else { InstanceState::Starting };
    InstanceRec { instance, seq, ready_at_ms: (delay > 0).then(|| now_ms() + delay), kubelet_not_ready: false }
}

fn new_member(tx: &mut Tx<'_>, config: &Config, zone: &str, pool: &InstancePool) -> InstanceRec {
    let spec = &pool.spec;
    let base = Instance {
        id: Uuid::nil(),
        name: String::new(),
        state: InstanceState::Starting,
        instance_type: spec.instance_type.unwrap_or(Ref { id: Uuid::nil() }),
        template: spec.template,
        disk_size: spec.disk_size,
        public_ip: None,
        ipv6_address: None,
        public_ip_assignment: spec.public_ip_assignment.clone(),
        private_networks: spec.private_networks.as_ref().map(|nets| {
            nets.iter().map(|n| PrivateNetworkAttachment { id: n.id, mac_address: Some(mac_address()) }).collect()
        }),
        security_groups: spec.security_groups.clone(),
        anti_affinity_groups: spec.anti_affinity_groups.clone(),
        elastic_ips: spec.elastic_ips.clone(),
        labels: spec.labels.clone(),
        manager: Some(Manager { id: pool.id, kind: ManagerType::InstancePool }),
        deploy_target: spec.deploy_target,
        mac_address: None,
        ssh_key: spec.ssh_key.clone(),
        ssh_keys: spec.ssh_keys.clone(),
        created_at: None,
        secureboot_enabled: None,
        tpm_enabled: None,
        disk_encrypted: None,
        application_consistent_snapshot_enabled: spec.application_consistent_snapshot_enabled,
        user_data: spec.user_data.clone(),
    };
    let prefix = spec.instance_prefix.clone().unwrap_or_else(|| "pool".to_owned());
    new_instance(tx, config, zone, InstanceTemplate { name: None, prefix, base })
}
