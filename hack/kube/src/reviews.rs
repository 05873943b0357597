//! TokenReview and SubjectAccessReview: answered from the static tokens and
//! the policy, never stored.

use std::sync::Arc;

use serde_json::{Value, json};
use sks_rest::authn::UserInfo;
use sks_rest::authz::Attributes;
use sks_rest::cache::ObjectCache;
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult};
use sks_rest::storage::{BoxFuture, Context, Creater, Storage};
use sks_rest::strategy::Strategy;

use crate::policy::Policy;
use crate::tokens::StaticTokens;

/// A create-only review kind.
pub struct Reviews {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    tokens: Arc<StaticTokens>,
    policy: Arc<Policy>,
}

impl Reviews {
    /// A review storage for `def` (tokenreviews or subjectaccessreviews).
    pub fn new(def: ResourceDef, tokens: Arc<StaticTokens>, policy: Arc<Policy>) -> Self {
        Reviews { def, cache: Arc::new(ObjectCache::new(0, 1)), tokens, policy }
    }

    fn token_review(&self, mut obj: Value) -> Value {
        let token = obj["spec"]["token"].as_str().unwrap_or("");
        let found = self.tokens.user(token);
        obj["status"] = match found {
            Some(u) => {
                json!({"authenticated": true, "user": {"username": u.name, "uid": u.uid, "groups": u.groups, "extra": u.extra}})
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        obj
    }

    fn access_review(&self, mut obj: Value) -> ApiResult<Value> {
        let spec = &obj["spec"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let user = UserInfo {
            name: spec["user"].as_str().unwrap_or("").to_owned(),
            uid: spec["uid"].as_str().map(str::to_owned),
            groups: strings(&spec["groups"]),
            extra: Default::default(),
        };
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let attrs = if let Some(r) = spec["resourceAttributes"].as_object() {
            let r = Value::Object(r.clone());
            Attributes {
                verb: s(&r["verb"]),
                group: s(&r["group"]),
                version: s(&r["version"]),
                resource: s(&r["resource"]),
                subresource: s(&r["subresource"]),
                name: s(&r["name"]),
                namespace: s(&r["namespace"]),
                path: String::new(),
            }
        } else if let Some(n) = spec["nonResourceAttributes"].as_object() {
            let n = Value::Object(n.clone());
            Attributes { verb: s(&n["verb"]), path: s(&n["path"]), ..Default::default() }
        } else {
            return Err(ApiError::invalid(
                "SubjectAccessReview",
                "authorization.k8s.io",
                "subjectaccessreviews",
                "",
                vec![sks_rest::status::Cause::required("spec.resourceAttributes")],
            ));
        };
        let d = self.policy.decide(&user, &attrs);
        obj["status"] = json!({"allowed": d.allowed, "reason": d.reason});
        Ok(obj)
    }
}

impl Storage for Reviews {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    // Reviews are answered, never stored: they cannot be read back.
    fn readable(&self) -> bool {
        false
    }

    fn creater(&self) -> Option<&dyn Creater> {
        Some(self)
    }
}

impl Creater for Reviews {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        None
    }

    fn create<'a>(&'a self, _ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            match self.def.plural {
                "tokenreviews" => Ok(self.token_review(obj)),
                _ => self.access_review(obj),
            }
        })
    }
}
