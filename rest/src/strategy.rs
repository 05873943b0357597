//! A kind's write rules, as k8s.io/apiserver's `RESTCreateStrategy` and
//! `RESTUpdateStrategy`: the write pipeline ([`super::write`]) calls these
//! hooks in a fixed order for every kind (prepare, then the generic metadata
//! rules plus `validate`, all causes in one 422); a kind supplies only what
//! differs. Validation must not change the object.

use serde_json::{Value, json};

use super::context::{BoxFuture, Context};
use super::status::{ApiResult, Cause};
use super::validation::{self, NameRule};

/// How a kind's objects are prepared and validated.
pub trait Strategy: Send + Sync {
    /// How names (and generateName prefixes) are checked.
    fn name_rule(&self) -> NameRule {
        validation::name_is_dns_subdomain
    }

    /// The group and kind errors name, when not the resource's own (kube-apiserver
    /// names the stored kind: events.k8s.io/v1 Events are core Events).
    fn error_kind(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Normalises an object about to be created: defaults, status cleared.
    /// May look things up (e.g. a catalog); a malformed body is a 400 here.
    fn prepare_for_create<'a>(&'a self, ctx: &'a Context, obj: &'a mut Value) -> BoxFuture<'a, ApiResult<()>> {
        let _ = (ctx, obj);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Field errors of a new object, beyond the generic metadata rules.
    fn validate(&self, ctx: &Context, obj: &Value) -> Vec<Cause> {
        let _ = (ctx, obj);
        Vec::new()
    }

    /// Normalises an update of `old` into `new` (of the subresource `sub`, if
    /// any): keep what the request may not change, bump the generation.
    fn prepare_for_update(&self, ctx: &Context, sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
        let _ = (ctx, sub, new, old);
        Ok(())
    }

    /// The grace period of a DELETE of `obj` asking for `requested` seconds
    /// (`RESTGracefulDeleteStrategy.CheckGracefulDelete`): `None` for kinds
    /// deleted at once (the default), else the seconds the object stays with
    /// a `deletionTimestamp` before it goes (0: at once).
    fn check_graceful_delete(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let _ = (obj, requested);
        None
    }

    /// Field errors of an update, beyond the generic metadata rules; by
    /// default those of a new object, for the object itself.
    fn validate_update(&self, ctx: &Context, sub: Option<&str>, new: &Value, old: &Value) -> Vec<Cause> {
        let _ = old;
        if sub.is_none() { self.validate(ctx, new) } else { Vec::new() }
    }
}

/// A kind with no rules beyond the generic metadata ones.
pub struct Plain;

impl Strategy for Plain {}

/// Everything of an object but metadata and status: what bumps `generation`.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

/// The generation of `new`, an update of `old`: one more when its spec changed.
pub fn next_generation(new: &Value, old: &Value) -> i64 {
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    if spec_part(new) == spec_part(old) { generation } else { generation + 1 }
}

/// Sets `new`'s `field` to `old`'s (removing it when `old` has none).
pub fn keep(new: &mut Value, old: &Value, field: &str) {
    match &old[field] {
        Value::Null => {
            if let Some(m) = new.as_object_mut() {
                m.remove(field);
            }
        }
        v => new[field] = v.clone(),
    }
}

/// The spec/status discipline of a kind with a status subresource: an update
/// of the object keeps the old status, one of `status` keeps everything but
/// the status; the generation moves with the spec.
pub fn status_discipline(sub: Option<&str>, new: &mut Value, old: &Value) {
    match sub {
        None => keep(new, old, "status"),
        Some(_) => {
            let status = new["status"].take();
            *new = old.clone();
            new["status"] = status;
        }
    }
    new["metadata"]["generation"] = json!(next_generation(new, old));
}
