//! Which properties the zone's answers carry, per schema of the spec: the one
//! place that says what a complete object is.
//!
//! The spec declares every property optional, so it cannot tell a client which
//! ones it may rely on; the real API always sends some (clients dereference
//! them: the `exo` CLI crashes on a cluster without `auto-upgrade`), sends
//! defaults for settings never set, and leaves the rest out while unset. Every
//! property the spec declares for a schema the zone answers with is listed in
//! [`RULES`] with its [`Presence`] (a unit test checks the lists against the
//! spec, so none is forgotten):
//!
//! - `Always`: the resource always has a value (ids, states, sizes, the
//!   template and instance type of a machine, the lists a resource owns);
//! - `Default`: a setting with a documented or implied default, reported as
//!   that default when it was never set (booleans, enums with a default);
//! - `WhenSet`: only while it has a value (descriptions, labels, taints,
//!   optional references, anything a reset-field call removes), as the real
//!   API leaves those out;
//! - `Never`: write-only in the spec.
//!
//! The zone passes every answer through [`complete`] (defaults filled in,
//! nested objects included); tests check answers with [`missing`].

use serde_json::Value;

/// How a property appears in the answers carrying its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In every answer: the resource always has a value for it.
    Always,
    /// In every answer: this value while it was never set.
    Default(Fallback),
    /// Only while it has a value.
    WhenSet,
    /// In no answer: the spec makes it write-only.
    Never,
}

/// The default value of a [`Presence::Default`] property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `false`.
    False,
    /// `true`.
    True,
    /// A string, e.g. `"inet4"`.
    Str(&'static str),
}

impl Fallback {
    /// The value as JSON.
    pub fn value(self) -> Value {
        match self {
            Fallback::False => Value::Bool(false),
            Fallback::True => Value::Bool(true),
            Fallback::Str(s) => Value::from(s),
        }
    }
}

use Presence::{Always, Never, WhenSet};

const FALSE: Presence = Presence::Default(Fallback::False);
const TRUE: Presence = Presence::Default(Fallback::True);
const INET4: Presence = Presence::Default(Fallback::Str("inet4"));

/// A schema's properties and their presence.
pub type Rule = &'static [(&'static str, Presence)];

/// The rule of every schema the zone answers with, by schema name.
pub const RULES: &[(&str, Rule)] = &[
    ("sks-cluster", SKS_CLUSTER),
    ("sks-nodepool", SKS_NODEPOOL),
    ("instance", INSTANCE),
    ("instance-pool", INSTANCE_POOL),
    ("load-balancer", LOAD_BALANCER),
    ("load-balancer-service", LOAD_BALANCER_SERVICE),
    ("instance-type", INSTANCE_TYPE),
    ("template", TEMPLATE),
    ("security-group", SECURITY_GROUP),
];

/// Properties holding a list of objects of another schema: (schema, property, item schema).
pub const NESTED: &[(&str, &str, &str)] =
    &[("sks-cluster", "nodepools", "sks-nodepool"), ("load-balancer", "services", "load-balancer-service")];

/// Where answers carry objects of a schema: (operationId, JSON pointer to the
/// object, or to a list of them, schema). `list-instances` is not here: its
/// items have a schema of their own, a subset of `instance`.
pub const ANSWERS: &[(&str, &str, &str)] = &[
    ("get-sks-cluster", "", "sks-cluster"),
    ("list-sks-clusters", "/sks-clusters", "sks-cluster"),
    ("get-sks-nodepool", "", "sks-nodepool"),
    ("get-instance", "", "instance"),
    ("get-instance-pool", "", "instance-pool"),
    ("list-instance-pools", "/instance-pools", "instance-pool"),
    ("get-load-balancer", "", "load-balancer"),
    ("list-load-balancers", "/load-balancers", "load-balancer"),
    ("get-load-balancer-service", "", "load-balancer-service"),
    ("get-instance-type", "", "instance-type"),
    ("list-instance-types", "/instance-types", "instance-type"),
    ("get-template", "", "template"),
    ("list-templates", "/templates", "template"),
    ("get-security-group", "", "security-group"),
    ("list-security-groups", "/security-groups", "security-group"),
];

// Clusters: `auto-upgrade` and `enable-kube-proxy` are read by `exo compute sks
// show` without a check; kube-proxy runs unless disabled at creation, and the
// operators CA is trusted only once enabled. No `cni` means no CNI.
const SKS_CLUSTER: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("version", Always),
    ("level", Always),
    ("endpoint", Always),
    ("created-at", Always),
    ("nodepools", Always),
    ("auto-upgrade", FALSE),
    ("enable-kube-proxy", TRUE),
    ("enable-operators-ca", FALSE),
    ("description", WhenSet),
    ("labels", WhenSet),
    ("cni", WhenSet),
    ("addons", WhenSet),
    ("feature-gates", WhenSet),
    ("oidc", WhenSet),
    ("audit", WhenSet),
    ("default-security-group-id", WhenSet),
];

// Nodepools: what SKS decides (template, version, instance pool) is always
// there, so `exo compute sks nodepool show` can look each up; addressing is
// IPv4 unless `dual` was asked for.
const SKS_NODEPOOL: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("size", Always),
    ("version", Always),
    ("template", Always),
    ("instance-pool", Always),
    ("instance-type", Always),
    ("disk-size", Always),
    ("created-at", Always),
    ("public-ip-assignment", INET4),
    ("description", WhenSet),
    ("labels", WhenSet),
    ("taints", WhenSet),
    ("instance-prefix", WhenSet),
    ("kubelet-image-gc", WhenSet),
    ("anti-affinity-groups", WhenSet),
    ("security-groups", WhenSet),
    ("private-networks", WhenSet),
    ("deploy-target", WhenSet),
    ("addons", WhenSet),
    ("nvidia-mig-profiles", WhenSet),
];

// Instances: `secureboot-enabled` and `tpm-enabled` are read by `exo compute
// instance show` without a check. Addresses exist only as assigned, a manager
// only for pool members.
const INSTANCE: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("instance-type", Always),
    ("template", Always),
    ("disk-size", Always),
    ("mac-address", Always),
    ("created-at", Always),
    ("public-ip-assignment", INET4),
    ("secureboot-enabled", FALSE),
    ("tpm-enabled", FALSE),
    ("disk-encrypted", FALSE),
    ("application-consistent-snapshot-enabled", FALSE),
    ("public-ip", WhenSet),
    ("ipv6-address", WhenSet),
    ("manager", WhenSet),
    ("labels", WhenSet),
    ("security-groups", WhenSet),
    ("anti-affinity-groups", WhenSet),
    ("elastic-ips", WhenSet),
    ("private-networks", WhenSet),
    ("deploy-target", WhenSet),
    ("ssh-key", WhenSet),
    ("ssh-keys", WhenSet),
    ("user-data", WhenSet),
    ("snapshots", WhenSet),
];

const INSTANCE_POOL: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("size", Always),
    ("instances", Always),
    ("instance-type", Always),
    ("template", Always),
    ("disk-size", Always),
    ("public-ip-assignment", INET4),
    ("application-consistent-snapshot-enabled", FALSE),
    ("manager", WhenSet),
    ("description", WhenSet),
    ("labels", WhenSet),
    ("instance-prefix", WhenSet),
    ("min-available", WhenSet),
    ("ipv6-enabled", WhenSet),
    ("anti-affinity-groups", WhenSet),
    ("security-groups", WhenSet),
    ("elastic-ips", WhenSet),
    ("private-networks", WhenSet),
    ("deploy-target", WhenSet),
    ("ssh-key", WhenSet),
    ("ssh-keys", WhenSet),
    ("user-data", WhenSet),
];

// NLBs and their services come back as they were sent: a CCM compares them
// field by field, so an injected description or healthcheck default would
// make it rewrite them forever.
const LOAD_BALANCER: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("ip", Always),
    ("created-at", Always),
    ("services", Always),
    ("description", WhenSet),
    ("labels", WhenSet),
];

const LOAD_BALANCER_SERVICE: Rule = &[
    ("id", Always),
    ("name", Always),
    ("state", Always),
    ("protocol", Always),
    ("strategy", Always),
    ("port", Always),
    ("target-port", Always),
    ("instance-pool", Always),
    ("healthcheck", Always),
    ("description", WhenSet),
    ("healthcheck-status", WhenSet),
];

const INSTANCE_TYPE: Rule = &[
    ("id", Always),
    ("family", Always),
    ("size", Always),
    ("cpus", Always),
    ("memory", Always),
    ("authorized", Always),
    ("zones", Always),
    ("gpus", WhenSet),
];

const TEMPLATE: Rule = &[
    ("id", Always),
    ("name", Always),
    ("family", Always),
    ("version", Always),
    ("build", Always),
    ("size", Always),
    ("created-at", Always),
    ("visibility", Always),
    ("zones", Always),
    ("maintainer", Always),
    ("default-user", Always),
    ("checksum", Always),
    ("url", Always),
    ("boot-mode", Presence::Default(Fallback::Str("legacy"))),
    ("ssh-key-enabled", TRUE),
    ("password-enabled", FALSE),
    ("application-consistent-snapshot-enabled", FALSE),
    ("description", WhenSet),
];

// The spec marks `rules` write-only (though `exo compute security-group show`
// reads them), so answers leave them out to stay valid.
const SECURITY_GROUP: Rule =
    &[("id", Always), ("name", Always), ("rules", Never), ("description", WhenSet), ("external-sources", WhenSet)];

/// The rule of `schema`, if the zone answers with it.
pub fn rule(schema: &str) -> Option<Rule> {
    RULES.iter().find(|(name, _)| *name == schema).map(|(_, rule)| *rule)
}

/// The properties of `schema` holding lists of objects of another schema.
fn nested(schema: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    NESTED.iter().filter(move |(of, ..)| *of == schema).map(|&(_, property, item)| (property, item))
}

/// Gives `value`, an object of `schema`, each default it lacks, and the
/// objects nested in it theirs.
pub fn fill(schema: &str, value: &mut Value) {
    let Some(object) = value.as_object_mut() else { return };
    for (name, presence) in rule(schema).unwrap_or_default() {
        if let Presence::Default(fallback) = presence {
            object.entry(*name).or_insert_with(|| fallback.value());
        }
    }
    for (property, item_schema) in nested(schema) {
        for item in object.get_mut(property).and_then(Value::as_array_mut).into_iter().flatten() {
            fill(item_schema, item);
        }
    }
}

/// The properties `value`, an object of `schema`, must have and lacks (nested
/// objects included), as paths under `path` such as `nodepools[0].template`.
pub fn missing(schema: &str, value: &Value, path: &str) -> Vec<String> {
    let at = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    let Some(object) = value.as_object() else {
        return vec![format!("{}: not an object", if path.is_empty() { "body" } else { path })];
    };
    let mut out: Vec<String> = rule(schema)
        .unwrap_or_default()
        .iter()
        .filter(|(name, presence)| matches!(presence, Always | Presence::Default(_)) && !object.contains_key(*name))
        .map(|(name, _)| at(name))
        .collect();
    for (property, item_schema) in nested(schema) {
        for (i, item) in object.get(property).and_then(Value::as_array).into_iter().flatten().enumerate() {
            out.extend(missing(item_schema, item, &format!("{}[{i}]", at(property))));
        }
    }
    out
}

/// Fills in the defaults of the objects an answer to `operation` carries.
pub fn complete(operation: &str, body: &mut Value) {
    for &(_, pointer, schema) in ANSWERS.iter().filter(|(op, ..)| *op == operation) {
        match body.pointer_mut(pointer) {
            Some(Value::Array(items)) if !pointer.is_empty() => items.iter_mut().for_each(|i| fill(schema, i)),
            Some(object) => fill(schema, object),
            None => {}
        }
    }
}

/// What the objects an answer to `operation` lack (see [`missing`]), as paths
/// from the answer's root such as `sks-clusters[1].auto-upgrade`.
pub fn missing_in_answer(operation: &str, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for &(_, pointer, schema) in ANSWERS.iter().filter(|(op, ..)| *op == operation) {
        match body.pointer(pointer) {
            Some(Value::Array(items)) if !pointer.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    out.extend(missing(schema, item, &format!("{}[{i}]", &pointer[1..])));
                }
            }
            Some(object) => out.extend(missing(schema, object, "")),
            None => out.push(format!("{}: absent", if pointer.is_empty() { "body" } else { &pointer[1..] })),
        }
    }
    out
}

#[cfg(test)]
mod tests;
