//! `pods/eviction` (policy/v1 Eviction), as kube-apiserver's `EvictionREST`:
//! a pod that has ended, is Pending or is already being deleted is deleted
//! outright; otherwise the one PodDisruptionBudget selecting it must allow a
//! disruption (429 TooManyRequests with a `DisruptionBudget` cause when it
//! does not, or has not been processed since its last change), which the
//! eviction spends (`status.disruptionsAllowed` decremented, the pod listed
//! in `status.disruptedPods`) before the pod gets `DisruptionTarget=True` and
//! is deleted, gracefully. Several budgets selecting the pod: a Failure
//! Status with code 500. An unready pod is evicted without spending the
//! budget when the budget is healthy or says `AlwaysAllow`.

use serde_json::{Value, json};
use sks_rest::memory::MemStorage;
use sks_rest::status::{ApiError, ApiResult, Cause, Details, GroupResource};
use sks_rest::storage::{Context, DeleteOptions, Deleter as _, Storage as _, Transform, Updater as _};
use sks_rest::write;

use super::binding::success;
use crate::conditions;
use crate::selector;

/// Pods an eviction may list in a budget's `disruptedPods` before the disruption controller catches up.
const MAX_DISRUPTED_PODS: usize = 2000;
const CANNOT_EVICT: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
const POLICY_BUDGET: GroupResource<'static> = GroupResource { group: "policy", resource: "poddisruptionbudget" };

fn too_many_requests(cause: String, retry_after: Option<u64>) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", CANNOT_EVICT);
    e.details = Some(Box::new(Details {
        causes: vec![Cause { reason: "DisruptionBudget", message: cause, field: String::new() }],
        retry_after,
        ..Details::default()
    }));
    e
}

fn still_processing(budget: &str) -> ApiError {
    too_many_requests(format!("The disruption budget {budget} is still being processed by the server."), Some(10))
}

fn forbidden(budget: &str, why: &str) -> ApiError {
    ApiError::new(403, "Forbidden", format!("{POLICY_BUDGET} {budget:?} is forbidden: {why}"))
}

/// What to do with an eviction, before any write.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Delete the pod without looking at budgets (it ended, is Pending or is being deleted).
    DeleteAnyway,
    /// No budget selects it: delete it.
    Unguarded,
    /// Delete it without spending the budget named (unready pod, healthy or AlwaysAllow budget),
    /// provided it has not changed since it was read.
    DeleteUnready(String),
    /// Spend a disruption of the budget named, then delete it.
    Spend(String),
    /// Several budgets select it.
    TooManyBudgets,
}

/// Decides an eviction of `pod` given the budgets of its namespace.
pub fn decide(pod: &Value, budgets: &[&Value]) -> Decision {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed" | "Pending") || !pod["metadata"]["deletionTimestamp"].is_null() {
        return Decision::DeleteAnyway;
    }
    let ns = &pod["metadata"]["namespace"];
    let selecting: Vec<&&Value> = budgets
        .iter()
        .filter(|b| {
            b["metadata"]["namespace"] == *ns && selector::matches(&b["spec"]["selector"], &pod["metadata"]["labels"])
        })
        .collect();
    let budget = match selecting.as_slice() {
        [] => return Decision::Unguarded,
        [one] => one,
        _ => return Decision::TooManyBudgets,
    };
    let name = budget["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if !conditions::is_ready(pod) {
        let always = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        let status = &budget["status"];
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        if always || (status["currentHealthy"].as_i64().unwrap_or(0) >= desired && desired > 0) {
            return Decision::DeleteUnready(name);
        }
    }
    Decision::Spend(name)
}

/// `checkAndDecrement`: the budget after spending a disruption on `pod`, or why it cannot be spent.
pub fn spend(budget: &Value, pod: &str, now: &str) -> ApiResult<Value> {
    let name = budget["metadata"]["name"].as_str().unwrap_or("");
    let status = &budget["status"];
    if status["observedGeneration"].as_i64().unwrap_or(0) < budget["metadata"]["generation"].as_i64().unwrap_or(0) {
        return Err(still_processing(name));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    if status["disruptedPods"].as_object().is_some_and(|m| m.len() > MAX_DISRUPTED_PODS) {
        return Err(forbidden(name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        let (desired, current) =
            (status["desiredHealthy"].as_i64().unwrap_or(0), status["currentHealthy"].as_i64().unwrap_or(0));
        return Err(too_many_requests(
            format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently"),
            None,
        ));
    }
    let mut out = budget.clone();
    out["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        crate::workloads::disruption::set_allowed_condition(&mut out);
    }
    if !out["status"]["disruptedPods"].is_object() {
        out["status"]["disruptedPods"] = json!({});
    }
    out["status"]["disruptedPods"][pod] = json!(now);
    Ok(out)
}

/// `POST pods/<name>/eviction` with `body`, an Eviction.
pub async fn evict(
    pods: &MemStorage,
    budgets: &MemStorage,
    ctx: &Context,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    if body["metadata"]["name"].as_str().unwrap_or("") != name {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut opts = DeleteOptions::default();
    let delete_options = &body["deleteOptions"];
    if !delete_options.is_null() {
        opts.apply_json(delete_options)?;
    }
    let mut ctx = ctx.clone();
    ctx.dry_run |= delete_options["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All"));
    let ns = ctx.namespace.clone().unwrap_or_default();
    let pod = pods
        .cache()
        .get(&(ns.clone(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found(pods.def().group_resource(), name))?;
    let all = budgets.cache().snapshot().0;
    let in_namespace: Vec<&Value> =
        all.iter().map(AsRef::as_ref).filter(|b| b["metadata"]["namespace"] == ns.as_str()).collect();
    let rv_unset = opts.resource_version.is_none();
    let pinned = |opts: &DeleteOptions| {
        let mut o = opts.clone();
        if rv_unset {
            o.resource_version = pod["metadata"]["resourceVersion"].as_str().map(str::to_owned);
        }
        o
    };
    match decide(&pod, &in_namespace) {
        Decision::TooManyBudgets => {
            return Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500}));
        }
        Decision::DeleteAnyway => {
            let ended_or_deleting = conditions::is_terminal(&pod) || !pod["metadata"]["deletionTimestamp"].is_null();
            let o = if ended_or_deleting { opts.clone() } else { pinned(&opts) };
            delete_disrupted(pods, &ctx, name, o, None).await?;
        }
        Decision::Unguarded => delete_disrupted(pods, &ctx, name, opts, None).await?,
        Decision::DeleteUnready(budget) => {
            let budget = rv_unset.then_some(budget);
            delete_disrupted(pods, &ctx, name, pinned(&opts), budget).await?;
        }
        Decision::Spend(budget) => {
            let now = conditions::now();
            let pod_name = name.to_owned();
            if ctx.dry_run {
                let current = budgets
                    .cache()
                    .get(&(ns.clone(), budget.clone()))
                    .ok_or_else(|| ApiError::not_found(budgets.def().group_resource(), &budget))?;
                spend(&current, &pod_name, &now)?;
            } else {
                let system = Context { dry_run: false, ..ctx.clone() };
                write::update(budgets.def(), budgets, &system, &budget, Some("status"), move |current| {
                    spend(current, &pod_name, &now)
                })
                .await?;
            }
            delete_disrupted(pods, &ctx, name, opts, None).await?;
        }
    }
    Ok(success())
}

/// Marks the pod `DisruptionTarget=True` (EvictionByEvictionAPI) and deletes
/// it with `opts`. A conflict on a resourceVersion the eviction pinned for an
/// unready pod under `budget` is a 429: the pod may have become Ready since.
async fn delete_disrupted(
    pods: &MemStorage,
    ctx: &Context,
    name: &str,
    mut opts: DeleteOptions,
    budget: Option<String>,
) -> ApiResult<()> {
    if !ctx.dry_run {
        let (uid, rv) = (opts.uid.clone(), opts.resource_version.clone());
        let transform: Transform<'_> = Box::new(move |current: &Value| {
            let meta = &current["metadata"];
            let pod_resource = GroupResource { group: "", resource: "Pod" };
            let pod_name = meta["name"].as_str().unwrap_or("");
            if let Some(uid) = uid.as_deref().filter(|u| Some(*u) != meta["uid"].as_str()) {
                let why = format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    meta["uid"].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict_message(pod_resource, pod_name, &why));
            }
            if let Some(rv) = rv.as_deref().filter(|r| Some(*r) != meta["resourceVersion"].as_str()) {
                let why = format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    meta["resourceVersion"].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict_message(pod_resource, pod_name, &why));
            }
            let mut pod = current.clone();
            conditions::set(&mut pod, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting");
            Ok(pod)
        });
        match pods.update(ctx, name, Some("status"), transform).await {
            Ok(updated) => {
                if opts.resource_version.is_some() {
                    opts.resource_version = updated["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                }
            }
            Err(e) if e.code == 409 && budget.is_some() => {
                return Err(still_processing(budget.as_deref().unwrap_or("")));
            }
            Err(e) => return Err(e),
        }
    }
    pods.delete(ctx, name, opts).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool) -> Value {
        json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn budget(name: &str, allowed: i64, current: i64, desired: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": current, "desiredHealthy": desired}})
    }

    #[test]
    fn decisions_follow_eviction_rest() {
        let b = budget("web", 0, 2, 2);
        assert_eq!(decide(&pod("Pending", false), &[&b]), Decision::DeleteAnyway);
        assert_eq!(decide(&pod("Running", true), &[]), Decision::Unguarded);
        assert_eq!(decide(&pod("Running", true), &[&b]), Decision::Spend("web".into()));
        assert_eq!(
            decide(&pod("Running", false), &[&b]),
            Decision::DeleteUnready("web".into()),
            "the budget is healthy"
        );
        let short = budget("web", 0, 1, 2);
        assert_eq!(decide(&pod("Running", false), &[&short]), Decision::Spend("web".into()));
        let other = budget("all", 1, 3, 1);
        assert_eq!(decide(&pod("Running", true), &[&b, &other]), Decision::TooManyBudgets);
        let mut elsewhere = other.clone();
        elsewhere["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(decide(&pod("Running", true), &[&b, &elsewhere]), Decision::Spend("web".into()));
    }

    #[test]
    fn spending_needs_an_allowed_disruption_of_a_processed_budget() {
        let e = spend(&budget("web", 0, 2, 2), "web-1", "t").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (429, CANNOT_EVICT));
        let status = e.to_status();
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
        );
        assert!(status["details"].get("retryAfterSeconds").is_none());
        let mut stale = budget("web", 1, 3, 2);
        stale["metadata"]["generation"] = json!(2);
        assert_eq!(spend(&stale, "web-1", "t").unwrap_err().retry_after(), Some(10));
        let spent = spend(&budget("web", 1, 3, 2), "web-1", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(spent["status"]["disruptionsAllowed"], 0);
        assert_eq!(spent["status"]["disruptedPods"], json!({"web-1": "2026-01-01T00:00:00Z"}));
        let condition = spent["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionAllowed")
            .unwrap();
        assert_eq!(
            (condition["status"].as_str(), condition["reason"].as_str()),
            (Some("False"), Some("InsufficientPods"))
        );
    }
}
