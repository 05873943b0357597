//! Who may do what: a small policy file, RBAC's rules without the objects.
//!
//! ```yaml
//! rules:
//! - groups: ["system:nodes"]           # or users: [...]; at least one of the two
//!   verbs: ["get", "list", "watch"]    # "*" for all
//!   apiGroups: [""]                    # "" is core; "*" for all
//!   resources: ["nodes", "nodes/status"]
//!   namespaces: ["kube-system"]        # optional; absent = every namespace and cluster scope
//! - users: ["alice"]
//!   verbs: ["get"]
//!   nonResourceURLs: ["/metrics", "/apis/*"]
//! ```
//! `system:masters` may do everything; every authenticated user may read
//! discovery, OpenAPI, `/version` and health, as `system:discovery` allows.

use serde::Deserialize;
use sks_rest::authn::UserInfo;
use sks_rest::authz::{AccessReviewer, Attributes, Decision, MASTERS};
use sks_rest::storage::BoxFuture;

/// One rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Users it applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups it applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Verbs allowed.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups of resources allowed.
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// Resources allowed (`res` or `res/sub`).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Namespaces allowed; empty means all and cluster scope.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths allowed (a trailing `*` is a prefix); RBAC's spelling.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

/// The policy.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Policy {
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

const DISCOVERY: &[&str] =
    &["/api", "/api/*", "/apis", "/apis/*", "/openapi/*", "/version", "/healthz", "/livez", "/readyz"];

fn any(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

fn path_match(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => p == path,
    })
}

impl Policy {
    /// Reads a policy file (YAML or JSON).
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_yaml::from_str(&text)?)
    }

    /// The decision for `user` doing `attrs`.
    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision { allowed: true, reason: "system:masters".into() };
        }
        if attrs.resource.is_empty()
            && attrs.verb == "get"
            && path_match(&DISCOVERY.iter().map(std::string::ToString::to_string).collect::<Vec<_>>(), &attrs.path)
        {
            return Decision { allowed: true, reason: "discovery is public to authenticated users".into() };
        }
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let subject = rule.users.contains(&user.name) || rule.groups.iter().any(|g| user.groups.contains(g));
            if !subject || !any(&rule.verbs, &attrs.verb) {
                continue;
            }
            let ok = if attrs.resource.is_empty() {
                path_match(&rule.non_resource_urls, &attrs.path)
            } else {
                any(&rule.api_groups, &attrs.group)
                    && (any(&rule.resources, &resource)
                        || (attrs.subresource.is_empty() && any(&rule.resources, &attrs.resource)))
                    && (rule.namespaces.is_empty() || rule.namespaces.contains(&attrs.namespace))
            };
            if ok {
                return Decision { allowed: true, reason: format!("allowed by policy rule {i}") };
            }
        }
        Decision { allowed: false, reason: String::new() }
    }
}

impl AccessReviewer for Policy {
    fn review<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
        let d = self.decide(user, attrs);
        Box::pin(async move { Ok(d) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(std::string::ToString::to_string).collect(),
            ..Default::default()
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rules_match_like_rbac() {
        let p: Policy = serde_yaml::from_str(
            r#"
rules:
- groups: ["system:nodes"]
  verbs: ["get", "list"]
  apiGroups: [""]
  resources: ["nodes"]
- users: ["ccm"]
  verbs: ["*"]
  apiGroups: ["certificates.k8s.io"]
  resources: ["certificatesigningrequests/approval"]
- users: ["cm-reader"]
  verbs: ["get"]
  apiGroups: [""]
  resources: ["configmaps"]
  namespaces: ["kube-system"]
"#,
        )
        .unwrap();
        assert!(p.decide(&user("n1", &["system:nodes"]), &res("list", "", "nodes", "", "")).allowed);
        assert!(!p.decide(&user("n1", &["system:nodes"]), &res("delete", "", "nodes", "", "")).allowed);
        assert!(
            !p.decide(&user("n1", &["system:nodes"]), &res("get", "", "nodes", "status", "")).allowed,
            "subresources are separate"
        );
        assert!(
            p.decide(
                &user("ccm", &[]),
                &res("update", "certificates.k8s.io", "certificatesigningrequests", "approval", "")
            )
            .allowed
        );
        assert!(p.decide(&user("cm-reader", &[]), &res("get", "", "configmaps", "", "kube-system")).allowed);
        assert!(!p.decide(&user("cm-reader", &[]), &res("get", "", "configmaps", "", "default")).allowed);
        assert!(p.decide(&user("x", &["system:masters"]), &res("delete", "", "nodes", "", "")).allowed);
        let discovery =
            Attributes { verb: "get".into(), path: "/apis/sks.exoscale.net/v1alpha1".into(), ..Default::default() };
        assert!(p.decide(&user("anyone", &["system:authenticated"]), &discovery).allowed);
    }
}
