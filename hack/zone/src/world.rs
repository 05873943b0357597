//! The zone's whole state in memory, its records, and the transaction that
//! tracks which records a request changed so exactly those are persisted.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::model::{Instance, InstancePool, InstanceState, LoadBalancer, Operation, SksCluster, SksNodepool};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sks_pki::CertificateAuthority;

use crate::control_plane::{self, Component};
use crate::upgrades::{FailSwitch, Upgrade};

/// An instance and the bookkeeping the zone needs about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRec {
    /// The instance as the API returns it.
    pub instance: Instance,
    /// Creation order, used to pick which members a scale-down removes.
    pub seq: u64,
    /// When a `starting` instance becomes `running` (UNIX ms).
    pub ready_at_ms: Option<i64>,
    /// A test switch (`PUT /admin/instance/{id}/kubelet`): the instance's
    /// simulated kubelet reports its Node NotReady, across reboots, until set
    /// back. A new instance (a replacement) starts healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubelet_not_ready: bool,
}

/// A cluster's certificate authorities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterPki {
    /// Signs the API server's certificate and user client certificates.
    pub control_plane: CertificateAuthority,
    /// Signs the front-proxy client certificate of API aggregation.
    pub aggregation: CertificateAuthority,
    /// Signs kubelet serving certificates.
    pub kubelet: CertificateAuthority,
}

/// A cluster (its `nodepools` field is filled in when rendered) and its CAs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRec {
    /// The cluster as stored; `nodepools` is always empty here.
    pub cluster: SksCluster,
    /// Its certificate authorities.
    pub pki: ClusterPki,
    /// Its control-plane components (filled in at load for clusters stored before they existed).
    #[serde(default)]
    pub control_plane: Vec<Component>,
    /// Its upgrades, newest first; the whole history is kept.
    #[serde(default)]
    pub upgrades: Vec<Upgrade>,
    /// A test switch: the next upgrade that replaces this component fails there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next_upgrade: Option<FailSwitch>,
}

/// A nodepool and the cluster it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodepoolRec {
    /// The owning cluster.
    pub cluster_id: Uuid,
    /// The nodepool as stored; `size` is taken from its instance pool when rendered.
    pub nodepool: SksNodepool,
}

/// What completing an operation does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Completion {
    /// Nothing beyond marking it done (the change was applied at once).
    Nothing,
    /// A resource leaves its transitional state (`creating`, `updating`...).
    Activate(Target),
    /// A resource in `deleting` is removed.
    Remove(Target),
    /// An instance reaches a state (start, stop, reboot).
    InstanceState(Uuid, InstanceState),
    /// A cluster's control plane reaches a version at once. Written by zones
    /// before per-component upgrades; kept so their pending operations load.
    ClusterVersion(Uuid, String),
    /// An upgrade of a cluster (cluster id, upgrade id) replaces its next
    /// component; the operation stays pending until the last one is done.
    Upgrade(Uuid, Uuid),
}

/// A resource an operation acts on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Target {
    /// An instance.
    Instance(Uuid),
    /// An instance pool.
    Pool(Uuid),
    /// An NLB.
    LoadBalancer(Uuid),
    /// A service of an NLB.
    LoadBalancerService(Uuid, Uuid),
    /// An SKS cluster.
    Cluster(Uuid),
    /// An SKS nodepool.
    Nodepool(Uuid),
}

/// An operation and when and how it completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRec {
    /// The operation as the API returns it.
    pub op: Operation,
    /// When it completes (UNIX ms).
    pub due_ms: i64,
    /// What completing it does.
    pub completion: Completion,
}

/// Zone-wide settings and counters that must survive restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Next address number to hand out (never reused).
    pub next_ip: u32,
    /// Next instance creation sequence number.
    pub next_seq: u64,
    /// The SKS versions catalog, newest first.
    pub versions: Vec<String>,
}

/// One zone's resources.
#[derive(Debug, Clone, Default)]
pub struct ZoneState {
    /// Instances.
    pub instances: BTreeMap<Uuid, InstanceRec>,
    /// Instance pools.
    pub pools: BTreeMap<Uuid, InstancePool>,
    /// NLBs.
    pub load_balancers: BTreeMap<Uuid, LoadBalancer>,
    /// SKS clusters.
    pub clusters: BTreeMap<Uuid, ClusterRec>,
    /// SKS nodepools.
    pub nodepools: BTreeMap<Uuid, NodepoolRec>,
    /// Operations, past and pending.
    pub operations: BTreeMap<Uuid, OpRec>,
}

/// Everything the zone knows.
#[derive(Debug, Default)]
pub struct World {
    /// Zone-wide settings and counters.
    pub meta: Meta,
    /// Resources by zone name.
    pub zones: BTreeMap<String, ZoneState>,
}

/// A kind of stored record.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// The kind's segment in storage keys.
    const KIND: &'static str;
    /// The record's id.
    fn id(&self) -> Uuid;
    /// The zone's table of this kind.
    fn table(zone: &ZoneState) -> &BTreeMap<Uuid, Self>;
    /// The zone's table of this kind, mutably.
    fn table_mut(zone: &mut ZoneState) -> &mut BTreeMap<Uuid, Self>;
}

macro_rules! record {
    ($ty:ty, $kind:literal, $field:ident, |$r:ident| $id:expr) => {
        impl Record for $ty {
            const KIND: &'static str = $kind;
            fn id(&self) -> Uuid {
                let $r = self;
                $id
            }
            fn table(zone: &ZoneState) -> &BTreeMap<Uuid, Self> {
                &zone.$field
            }
            fn table_mut(zone: &mut ZoneState) -> &mut BTreeMap<Uuid, Self> {
                &mut zone.$field
            }
        }
    };
}

record!(InstanceRec, "instance", instances, |r| r.instance.id);
record!(InstancePool, "instance-pool", pools, |r| r.id);
record!(LoadBalancer, "load-balancer", load_balancers, |r| r.id);
record!(ClusterRec, "sks-cluster", clusters, |r| r.cluster.id);
record!(NodepoolRec, "sks-nodepool", nodepools, |r| r.nodepool.id);
record!(OpRec, "operation", operations, |r| r.op.id);

const META_KEY: &str = "meta";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Dirty {
    Meta,
    Record { zone: String, kind: &'static str, id: Uuid },
}

fn record_key(zone: &str, kind: &str, id: Uuid) -> String {
    format!("zone/{zone}/{kind}/{id}")
}

impl World {
    /// Rebuilds the world from stored records; `zones` are created if missing.
    pub fn load(records: Vec<(String, Vec<u8>)>, zones: &[String]) -> anyhow::Result<World> {
        let mut world = World::default();
        for zone in zones {
            world.zones.entry(zone.clone()).or_default();
        }
        for (key, bytes) in records {
            if key == META_KEY {
                world.meta = serde_json::from_slice(&bytes)?;
                continue;
            }
            let mut parts = key.splitn(4, '/');
            let (Some("zone"), Some(zone), Some(kind), Some(_id)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("unexpected key {key:?} in the state database");
            };
            let state = world.zones.entry(zone.to_owned()).or_default();
            fn insert<R: Record>(state: &mut ZoneState, bytes: &[u8]) -> anyhow::Result<()> {
                let rec: R = serde_json::from_slice(bytes)?;
                R::table_mut(state).insert(rec.id(), rec);
                Ok(())
            }
            match kind {
                InstanceRec::KIND => insert::<InstanceRec>(state, &bytes)?,
                InstancePool::KIND => insert::<InstancePool>(state, &bytes)?,
                LoadBalancer::KIND => insert::<LoadBalancer>(state, &bytes)?,
                ClusterRec::KIND => insert::<ClusterRec>(state, &bytes)?,
                NodepoolRec::KIND => insert::<NodepoolRec>(state, &bytes)?,
                OpRec::KIND => insert::<OpRec>(state, &bytes)?,
                other => anyhow::bail!("unknown record kind {other:?} in key {key:?}"),
            }
        }
        for rec in world.zones.values_mut().flat_map(|z| z.clusters.values_mut()) {
            if rec.control_plane.is_empty() {
                rec.control_plane = control_plane::at_version(&rec.cluster.version);
            }
        }
        Ok(world)
    }

    /// The zone's resources; every served zone exists.
    pub fn zone(&self, zone: &str) -> &ZoneState {
        self.zones.get(zone).expect("served zones are created at load")
    }
}

/// A set of changes to the world, persisted together.
pub struct Tx<'w> {
    world: &'w mut World,
    dirty: BTreeSet<Dirty>,
}

impl<'w> Tx<'w> {
    /// Starts tracking changes to `world`.
    pub fn new(world: &'w mut World) -> Self {
        Tx { world, dirty: BTreeSet::new() }
    }

    /// Read access to everything.
    pub fn world(&self) -> &World {
        self.world
    }

    /// One zone's resources.
    pub fn zone(&self, zone: &str) -> &ZoneState {
        self.world.zone(zone)
    }

    /// A record by id.
    pub fn get<R: Record>(&self, zone: &str, id: Uuid) -> Option<&R> {
        R::table(self.zone(zone)).get(&id)
    }

    /// Inserts or replaces a record.
    pub fn put<R: Record>(&mut self, zone: &str, rec: R) {
        let id = rec.id();
        R::table_mut(self.zone_mut(zone)).insert(id, rec);
        self.dirty.insert(Dirty::Record { zone: zone.to_owned(), kind: R::KIND, id });
    }

    /// Changes a record in place; false when it does not exist.
    pub fn update<R: Record>(&mut self, zone: &str, id: Uuid, f: impl FnOnce(&mut R)) -> bool {
        let Some(rec) = R::table_mut(self.zone_mut(zone)).get_mut(&id) else { return false };
        f(rec);
        self.dirty.insert(Dirty::Record { zone: zone.to_owned(), kind: R::KIND, id });
        true
    }

    /// Removes a record.
    pub fn remove<R: Record>(&mut self, zone: &str, id: Uuid) -> Option<R> {
        let removed = R::table_mut(self.zone_mut(zone)).remove(&id);
        if removed.is_some() {
            self.dirty.insert(Dirty::Record { zone: zone.to_owned(), kind: R::KIND, id });
        }
        removed
    }

    /// Zone-wide settings and counters, to change.
    pub fn meta_mut(&mut self) -> &mut Meta {
        self.dirty.insert(Dirty::Meta);
        &mut self.world.meta
    }

    fn zone_mut(&mut self, zone: &str) -> &mut ZoneState {
        self.world.zones.get_mut(zone).expect("served zones are created at load")
    }

    /// The storage writes for everything changed: current values, or deletions.
    pub fn into_changes(self) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>> {
        fn value<R: Record>(zone: &ZoneState, id: Uuid) -> anyhow::Result<Option<Vec<u8>>> {
            R::table(zone).get(&id).map(serde_json::to_vec).transpose().map_err(Into::into)
        }
        let mut out = Vec::with_capacity(self.dirty.len());
        for dirty in self.dirty {
            match dirty {
                Dirty::Meta => out.push((META_KEY.to_owned(), Some(serde_json::to_vec(&self.world.meta)?))),
                Dirty::Record { zone, kind, id } => {
                    let z = self.world.zone(&zone);
                    let bytes = match kind {
                        InstanceRec::KIND => value::<InstanceRec>(z, id)?,
                        InstancePool::KIND => value::<InstancePool>(z, id)?,
                        LoadBalancer::KIND => value::<LoadBalancer>(z, id)?,
                        ClusterRec::KIND => value::<ClusterRec>(z, id)?,
                        NodepoolRec::KIND => value::<NodepoolRec>(z, id)?,
                        OpRec::KIND => value::<OpRec>(z, id)?,
                        other => unreachable!("record kind {other} has no table"),
                    };
                    out.push((record_key(&zone, kind, id), bytes));
                }
            }
        }
        Ok(out)
    }
}
