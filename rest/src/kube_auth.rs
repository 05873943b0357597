//! Delegated authentication and authorization through the cluster's API:
//! TokenReview, SubjectAccessReview, and the front-proxy settings published in
//! `kube-system/extension-apiserver-authentication`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::authn::{Authenticator, AuthnConfig, RequestHeaderConfig, TokenReviewer, UserInfo};
use super::authz::{AccessReviewer, Attributes, Decision};
use super::storage::BoxFuture;

/// Reviews tokens and access through the cluster's API.
#[derive(Clone)]
pub struct KubeReviewer {
    client: kube::Client,
}

impl KubeReviewer {
    /// A reviewer using `client`.
    pub fn new(client: kube::Client) -> Self {
        KubeReviewer { client }
    }
}

impl TokenReviewer for KubeReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec { token: Some(token.to_owned()), ..Default::default() },
                ..Default::default()
            };
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let answer = api.create(&PostParams::default(), &review).await.map_err(|e| e.to_string())?;
            let Some(status) = answer.status.filter(|s| s.authenticated == Some(true)) else { return Ok(None) };
            let user = status.user.unwrap_or_default();
            Ok(Some(UserInfo {
                name: user.username.unwrap_or_default(),
                uid: user.uid,
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }))
        })
    }
}

impl AccessReviewer for KubeReviewer {
    fn review<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
        Box::pin(async move {
            let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let (resource_attributes, non_resource_attributes) = if attrs.resource.is_empty() {
                (None, Some(NonResourceAttributes { path: some(&attrs.path), verb: some(&attrs.verb) }))
            } else {
                (
                    Some(ResourceAttributes {
                        group: Some(attrs.group.clone()),
                        version: some(&attrs.version),
                        resource: some(&attrs.resource),
                        subresource: some(&attrs.subresource),
                        name: some(&attrs.name),
                        namespace: some(&attrs.namespace),
                        verb: some(&attrs.verb),
                        ..Default::default()
                    }),
                    None,
                )
            };
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.name.clone()),
                    uid: user.uid.clone(),
                    groups: Some(user.groups.clone()),
                    extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                    resource_attributes,
                    non_resource_attributes,
                },
                ..Default::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = api.create(&PostParams::default(), &review).await.map_err(|e| e.to_string())?;
            let status = answer.status.unwrap_or_default();
            Ok(Decision {
                allowed: status.allowed && status.denied != Some(true),
                reason: status.reason.unwrap_or_default(),
            })
        })
    }
}

/// The authentication settings of the ConfigMap's `data`, on top of `flags`
/// (settings given on the command line win, as in k8s.io/apiserver).
pub fn config_from(data: &BTreeMap<String, String>, flags: &AuthnConfig) -> anyhow::Result<AuthnConfig> {
    let from_map = RequestHeaderConfig::from_configmap_data(data)?;
    Ok(AuthnConfig {
        client_ca_pem: flags.client_ca_pem.clone().or_else(|| data.get("client-ca-file").cloned()),
        request_header: flags.request_header.clone().or(from_map),
    })
}

/// Keeps `authn` in step with `kube-system/extension-apiserver-authentication`,
/// re-reading it every `period` (CA rotation, allowed names). Never returns.
pub async fn follow_authentication_configmap(
    client: kube::Client,
    authn: Arc<Authenticator>,
    flags: AuthnConfig,
    period: Duration,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let mut last: Option<BTreeMap<String, String>> = None;
    loop {
        match api.get_opt("extension-apiserver-authentication").await {
            Ok(Some(cm)) => {
                let data = cm.data.unwrap_or_default();
                if last.as_ref() != Some(&data) {
                    match config_from(&data, &flags).and_then(|c| authn.set_config(c)) {
                        Ok(()) => {
                            tracing::info!(
                                "loaded front-proxy and client CA settings from kube-system/extension-apiserver-authentication"
                            );
                            last = Some(data);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring an unusable extension-apiserver-authentication ConfigMap");
                        }
                    }
                }
            }
            Ok(None) => tracing::debug!("kube-system/extension-apiserver-authentication does not exist"),
            Err(e) => tracing::warn!(error = %e, "reading kube-system/extension-apiserver-authentication failed"),
        }
        tokio::time::sleep(period).await;
    }
}
