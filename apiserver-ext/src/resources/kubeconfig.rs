//! KubeconfigRequests: create-only. The answer carries a kubeconfig from the
//! orchestrator for the requested user and groups; nothing is stored, and the
//! kubeconfig (it holds a private key) is never logged.

use std::sync::Arc;

use orchestrator::model::KubeconfigRequest;
use serde_json::{Value, json};
use uuid::Uuid;

use super::errors::from_orchestrator;
use super::nodepool::def::{GROUP, VERSION};
use sks_rest::cache::ObjectCache;
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Creater, Storage};
use sks_rest::strategy::Strategy;

/// Lifetime when the request names none: one day.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 86_400;
/// Longest lifetime: 30 days.
pub const MAX_EXPIRATION_SECONDS: i64 = 30 * 86_400;

fn schema() -> Value {
    json!({
        "description": "KubeconfigRequest asks for a kubeconfig with a client certificate for a user and groups. It is create-only: the created object carries the kubeconfig and is not stored.",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["user"],
                "description": "Who the kubeconfig authenticates as.",
                "properties": {
                    "user": {"type": "string", "description": "User name (the certificate's CN)."},
                    "groups": {"type": "array", "items": {"type": "string"}, "description": "Groups (the certificate's O)."},
                    "expirationSeconds": {"type": "integer", "format": "int64", "minimum": 600, "maximum": MAX_EXPIRATION_SECONDS, "description": "Lifetime of the certificate in seconds: default one day (86400), at most 30 days (2592000)."}
                }
            },
            "status": {
                "type": "object",
                "description": "The kubeconfig (read-only, returned once).",
                "properties": {
                    "kubeconfig": {"type": "string", "description": "The kubeconfig YAML; it holds a private key."},
                    "expirationTimestamp": {"type": "string", "format": "date-time", "description": "When the certificate expires."}
                }
            }
        }
    })
}

/// The KubeconfigRequest resource.
pub fn definition() -> ResourceDef {
    ResourceDef {
        group: GROUP,
        version: VERSION,
        plural: "kubeconfigrequests",
        singular: "kubeconfigrequest",
        kind: "KubeconfigRequest",
        short_names: &["kcr"],
        categories: &["sks"],
        namespaced: false,
        verbs: Vec::new(),
        subresources: Vec::new(),
        columns: Vec::new(),
        schema: schema(),
        extra_field_selectors: &[],
        strategic_merge: None,
    }
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// User.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Lifetime.
    pub expiration_seconds: i64,
}

/// Validates a KubeconfigRequest's spec (the field paths of every problem).
pub fn validate(obj: &Value) -> Result<Request, Vec<Cause>> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let user = spec["user"].as_str().unwrap_or_default().to_owned();
    if user.is_empty() {
        causes.push(Cause::required("spec.user"));
    } else if user.len() > 255 {
        causes.push(Cause::invalid("spec.user", &spec["user"], "must be at most 255 characters"));
    }
    let groups: Vec<String> = match &spec["groups"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, g)| match g.as_str() {
                Some(s) if !s.is_empty() => Some(s.to_owned()),
                _ => {
                    causes.push(Cause::invalid(&format!("spec.groups[{i}]"), g, "must be a non-empty string"));
                    None
                }
            })
            .collect(),
        other => {
            causes.push(Cause::invalid("spec.groups", other, "must be a list of group names"));
            Vec::new()
        }
    };
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => match v.as_i64() {
            Some(s) if (600..=MAX_EXPIRATION_SECONDS).contains(&s) => s,
            _ => {
                causes.push(Cause::invalid(
                    "spec.expirationSeconds",
                    v,
                    format!("must be from 600 (10 minutes) to {MAX_EXPIRATION_SECONDS} (30 days)"),
                ));
                0
            }
        },
    };
    if causes.is_empty() { Ok(Request { user, groups, expiration_seconds }) } else { Err(causes) }
}

/// The KubeconfigRequest storage of one cluster.
pub struct KubeconfigRequests {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    client: orchestrator::Client,
    cluster: Uuid,
}

impl KubeconfigRequests {
    /// Requests against `cluster`.
    pub fn new(client: orchestrator::Client, cluster: Uuid) -> Self {
        KubeconfigRequests {
            def: definition(),
            // Never filled: nothing is stored, and get/list/watch are not served.
            cache: Arc::new(ObjectCache::new(ObjectCache::random_epoch(), 1)),
            client,
            cluster,
        }
    }

    async fn issue(&self, ctx: &Context, mut obj: Value) -> ApiResult<Value> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let request = validate(&obj)
            .map_err(|causes| ApiError::invalid(self.def.kind, self.def.group, self.def.plural, &name, causes))?;
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(request.expiration_seconds);
        obj["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
        obj["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        if ctx.dry_run {
            obj["status"] = json!({"expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
            return Ok(obj);
        }
        let body = KubeconfigRequest {
            user: request.user.clone(),
            groups: request.groups.clone(),
            ttl: Some(request.expiration_seconds),
        };
        let kubeconfig = self
            .client
            .generate_sks_cluster_kubeconfig(self.cluster, &body)
            .await
            .map_err(|e| from_orchestrator(&e, self.def.group_resource(), &name))?;
        // The credential's own expiry when it can be read: the orchestrator may issue less than asked.
        let expires = certificate_expiry(&kubeconfig).unwrap_or(expires);
        // Who got a credential, for audit; never the credential itself.
        tracing::info!(requester = %ctx.user.name, user = %request.user, groups = ?request.groups, expiration_seconds = request.expiration_seconds, "issued a kubeconfig");
        obj["status"] = json!({
            "kubeconfig": kubeconfig,
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
        Ok(obj)
    }
}

/// When the client certificate of `kubeconfig` (YAML, as the orchestrator
/// issues it: `client-certificate-data`, base64 PEM) expires.
fn certificate_expiry(kubeconfig: &str) -> Option<jiff::Timestamp> {
    use base64::Engine as _;
    let data = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("client-certificate-data:"))?;
    let pem = base64::engine::general_purpose::STANDARD.decode(data.trim().trim_matches('"')).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

impl Storage for KubeconfigRequests {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    // Nothing is kept, so nothing can be read back.
    fn readable(&self) -> bool {
        false
    }

    fn creater(&self) -> Option<&dyn Creater> {
        Some(self)
    }
}

impl Strategy for KubeconfigRequests {
    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        validate(obj).err().unwrap_or_default()
    }
}

impl Creater for KubeconfigRequests {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        Some(self)
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.issue(ctx, obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_the_issued_certificates() {
        let ca = sks_pki::CertificateAuthority::generate("kubernetes-ca").unwrap();
        let cert = ca.issue_client("alice", &["dev".to_owned()], std::time::Duration::from_secs(3_600)).unwrap();
        let kubeconfig = sks_pki::render_kubeconfig("demo", "https://127.0.0.1:6443", &ca.cert_pem, "alice", &cert);
        let expiry = certificate_expiry(&kubeconfig).expect("an expiry");
        let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3_600);
        assert!((expiry.as_second() - in_an_hour.as_second()).abs() <= 120, "{expiry} vs {in_an_hour}");
        assert_eq!(certificate_expiry("apiVersion: v1\nkind: Config\n"), None);
        assert_eq!(certificate_expiry("    client-certificate-data: bm90IGEgY2VydA=="), None, "not a certificate");
    }

    #[test]
    fn defaults_and_limits() {
        let ok = validate(&json!({"spec": {"user": "alice", "groups": ["dev"]}})).unwrap();
        assert_eq!(
            (ok.user.as_str(), ok.groups.clone(), ok.expiration_seconds),
            ("alice", vec!["dev".to_owned()], 86_400)
        );
        let causes = validate(&json!({"spec": {"user": "alice", "expirationSeconds": 31 * 86_400}})).unwrap_err();
        assert_eq!(causes[0].field, "spec.expirationSeconds");
        assert!(causes[0].message.contains("30 days"), "{}", causes[0].message);
        let causes = validate(&json!({"spec": {"groups": ["", 3]}})).unwrap_err();
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.user", "spec.groups[0]", "spec.groups[1]"]);
    }
}
