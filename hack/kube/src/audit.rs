//! An opt-in audit log (`--audit-log FILE`): one JSON line per request that
//! needs a decision, naming who asked for what and whether the policy allowed
//! it. Tests use it to derive the RBAC a binary needs from what it really does.
//!
//! It sits between the authorizer and the policy, so it sees every request of
//! users outside `system:masters` (those are allowed before any review, as in
//! kube-apiserver, and are not logged); the stand-in turns its decision cache
//! off while auditing, so repeated requests are logged each time. Reviews made
//! on behalf of others (SubjectAccessReview bodies) are not requests and are not
//! logged.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sks_rest::authn::UserInfo;
use sks_rest::authz::{AccessReviewer, Attributes, Decision};
use sks_rest::storage::BoxFuture;

/// A reviewer that logs every review of `inner` to a file.
pub struct Audited {
    inner: Arc<dyn AccessReviewer>,
    file: Mutex<std::fs::File>,
}

impl Audited {
    /// Appends to `path` (created if missing).
    pub fn open(inner: Arc<dyn AccessReviewer>, path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Audited { inner, file: Mutex::new(file) })
    }

    fn record(&self, user: &UserInfo, attrs: &Attributes, allowed: bool) {
        let line = json!({
            "user": user.name,
            "groups": user.groups,
            "verb": attrs.verb,
            "apiGroup": attrs.group,
            "resource": attrs.resource,
            "subresource": attrs.subresource,
            "namespace": attrs.namespace,
            "name": attrs.name,
            "path": attrs.path,
            "allowed": allowed,
        });
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
}

impl AccessReviewer for Audited {
    fn review<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
        Box::pin(async move {
            let decision = self.inner.review(user, attrs).await;
            self.record(user, attrs, decision.as_ref().is_ok_and(|d| d.allowed));
            decision
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[tokio::test]
    async fn every_review_is_one_line() {
        let path = std::env::temp_dir().join(format!("audit-{}.jsonl", uuid::Uuid::new_v4().simple()));
        let policy: Policy =
            serde_yaml::from_str("rules: [{users: [ccm], verbs: [list], apiGroups: [''], resources: [nodes]}]")
                .unwrap();
        let audited = Audited::open(Arc::new(policy), &path).unwrap();
        let user = UserInfo { name: "ccm".into(), groups: vec!["g".into()], ..Default::default() };
        let list = Attributes { verb: "list".into(), resource: "nodes".into(), ..Default::default() };
        let delete =
            Attributes { verb: "delete".into(), resource: "nodes".into(), name: "n1".into(), ..Default::default() };
        for attrs in [&list, &list, &delete] {
            audited.review(&user, attrs).await.unwrap();
        }
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let _ = std::fs::remove_file(&path);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            (lines[0]["user"].as_str(), lines[0]["verb"].as_str(), lines[0]["allowed"].as_bool()),
            (Some("ccm"), Some("list"), Some(true))
        );
        assert_eq!((lines[2]["name"].as_str(), lines[2]["allowed"].as_bool()), (Some("n1"), Some(false)));
    }
}
