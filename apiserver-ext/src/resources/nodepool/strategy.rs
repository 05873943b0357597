//! NodePool's write rules: defaults, the spec checked against the
//! orchestrator's catalog, and the create-only rules.

use serde_json::{Value, json};
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context};
use sks_rest::strategy::Strategy;
use sks_rest::validation::{self, NameRule};

use super::NodePools;
use super::convert::NodePoolSpec;
use super::validate;

/// The spec of `obj`; a field of the wrong type is a 400, as decoding is in kube-apiserver.
pub(super) fn spec_from(obj: &Value) -> ApiResult<NodePoolSpec> {
    match &obj["spec"] {
        Value::Null => Ok(NodePoolSpec::default()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("spec: {e}"))),
    }
}

/// Fills the defaults of `obj`'s spec: `replicas` when unset, the disk size,
/// and the public IP assignment the orchestrator defaults to (so a spec that
/// leaves it out equals the stored one, and a replace changes nothing).
fn default_spec(obj: &mut Value, replicas: i64) -> ApiResult<NodePoolSpec> {
    let mut spec = spec_from(obj)?;
    spec.replicas = Some(spec.replicas.unwrap_or(replicas));
    spec.disk_size = Some(spec.disk_size.unwrap_or(validate::DEFAULT_DISK_SIZE));
    spec.public_ip_assignment.get_or_insert_with(|| validate::DEFAULT_PUBLIC_IP_ASSIGNMENT.to_owned());
    obj["spec"] = serde_json::to_value(&spec).expect("specs serialise");
    Ok(spec)
}

impl NodePools {
    fn validate_spec(&self, obj: &Value) -> Vec<Cause> {
        match spec_from(obj) {
            Ok(spec) => validate::validate(&spec, &self.types()),
            // Cannot happen after prepare, which refuses it with a 400.
            Err(e) => vec![Cause::invalid("spec", &obj["spec"], e.message)],
        }
    }
}

impl Strategy for NodePools {
    // A nodepool's name becomes its instances' hostname prefix.
    fn name_rule(&self) -> NameRule {
        validation::name_is_dns_label
    }

    fn prepare_for_create<'a>(&'a self, _ctx: &'a Context, obj: &'a mut Value) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let spec = default_spec(obj, 1)?;
            if self.types().by_name(spec.instance_type.as_deref().unwrap_or("")).is_none() {
                // A type published since the catalog was loaded is still accepted.
                let _ = self.load_types().await;
            }
            Ok(())
        })
    }

    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        let mut causes = self.validate_spec(obj);
        if let Ok(spec) = spec_from(obj) {
            causes.extend(validate::replicas_outside(&spec));
        }
        if obj["spec"]["replicas"] == json!(0) {
            causes.push(Cause::invalid(
                "spec.replicas",
                &json!(0),
                "must be at least 1 when creating a nodepool; scale it to 0 afterwards",
            ));
        }
        causes
    }

    fn prepare_for_update(&self, _ctx: &Context, sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
        if sub.is_none() {
            default_spec(new, old["spec"]["replicas"].as_i64().unwrap_or(0))?;
        }
        Ok(())
    }

    fn validate_update(&self, _ctx: &Context, sub: Option<&str>, new: &Value, old: &Value) -> Vec<Cause> {
        if sub.is_some() {
            return Vec::new();
        }
        let mut causes = self.validate_spec(new);
        // A manual scale must stay within the autoscaler's bounds, or the two would fight.
        if new["spec"]["replicas"] != old["spec"]["replicas"]
            && let Ok(spec) = spec_from(new)
        {
            causes.extend(validate::replicas_outside(&spec));
        }
        causes
    }
}
