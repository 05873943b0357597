//! Authorization: SubjectAccessReview per request (through a pluggable
//! reviewer), with allow and deny caches, and `system:masters` allowed locally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::authn::UserInfo;
use super::storage::BoxFuture;

/// What a request does, as a SubjectAccessReview describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Attributes {
    /// Verb: get, list, watch, create, update, patch, delete...
    pub verb: String,
    /// API group of a resource request.
    pub group: String,
    /// Version.
    pub version: String,
    /// Resource plural ("" for non-resource requests).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Path of a non-resource request.
    pub path: String,
}

/// A decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether it is allowed.
    pub allowed: bool,
    /// Why (shown in 403 messages).
    pub reason: String,
}

/// Asks the cluster whether a user may do something (SubjectAccessReview in production).
pub trait AccessReviewer: Send + Sync {
    /// Reviews one request.
    fn review<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>>;
}

/// The group that is allowed everything without asking, as in k8s.io/apiserver.
pub const MASTERS: &str = "system:masters";

/// Authorizes requests, caching decisions.
pub struct Authorizer {
    reviewer: Option<Arc<dyn AccessReviewer>>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    cache: Mutex<HashMap<String, (Decision, Instant)>>,
}

impl Authorizer {
    /// An authorizer; without a reviewer only `system:masters` is allowed.
    pub fn new(reviewer: Option<Arc<dyn AccessReviewer>>, allow_ttl: Duration, deny_ttl: Duration) -> Self {
        Authorizer { reviewer, allow_ttl, deny_ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The decision for `user` doing `attrs`; reviewer failures are errors (503), not denials.
    pub async fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<Decision, String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(Decision { allowed: true, reason: String::new() });
        }
        let Some(reviewer) = &self.reviewer else {
            return Ok(Decision {
                allowed: false,
                reason: "no authorizer is configured for users outside system:masters".into(),
            });
        };
        let key = serde_json::to_string(&(user, attrs)).unwrap_or_default();
        if let Some((decision, at)) =
            self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned()
        {
            let ttl = if decision.allowed { self.allow_ttl } else { self.deny_ttl };
            if at.elapsed() < ttl {
                return Ok(decision);
            }
        }
        let decision = reviewer.review(user, attrs).await?;
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 10_000 {
            let (allow, deny) = (self.allow_ttl, self.deny_ttl);
            cache.retain(|_, (d, at)| at.elapsed() < if d.allowed { allow } else { deny });
        }
        cache.insert(key, (decision.clone(), Instant::now()));
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize, bool);

    impl AccessReviewer for Counting {
        fn review<'a>(&'a self, _: &'a UserInfo, _: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let allowed = self.1;
            Box::pin(async move { Ok(Decision { allowed, reason: "policy".into() }) })
        }
    }

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            name: "u".into(),
            groups: groups.iter().map(std::string::ToString::to_string).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn masters_skip_review_and_decisions_are_cached_for_their_ttl() {
        let reviewer = Arc::new(Counting(AtomicUsize::new(0), false));
        let authz = Authorizer::new(Some(reviewer.clone()), Duration::from_secs(10), Duration::from_millis(50));
        let attrs = Attributes { verb: "get".into(), resource: "nodepools".into(), ..Default::default() };
        assert!(authz.authorize(&user(&[MASTERS]), &attrs).await.unwrap().allowed);
        assert_eq!(reviewer.0.load(Ordering::SeqCst), 0);
        assert!(!authz.authorize(&user(&["dev"]), &attrs).await.unwrap().allowed);
        assert!(!authz.authorize(&user(&["dev"]), &attrs).await.unwrap().allowed);
        assert_eq!(reviewer.0.load(Ordering::SeqCst), 1, "the denial was cached");
        tokio::time::sleep(Duration::from_millis(60)).await;
        authz.authorize(&user(&["dev"]), &attrs).await.unwrap();
        assert_eq!(reviewer.0.load(Ordering::SeqCst), 2, "no longer than the deny TTL");
    }

    #[tokio::test]
    async fn without_a_reviewer_only_masters_pass() {
        let authz = Authorizer::new(None, Duration::from_secs(10), Duration::from_secs(10));
        assert!(!authz.authorize(&user(&["dev"]), &Attributes::default()).await.unwrap().allowed);
    }
}
