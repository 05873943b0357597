//! The orchestrator HTTP client: signing, zone switching, retries, timeouts,
//! operation polling and metrics. One method per endpoint of orchestrator-api.md §4.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::credentials::CredentialSource;
use crate::error::{Error, Result};
use crate::metrics::ClientMetrics;
use crate::model::*;
use crate::retry::{Failure, RetryPolicy, parse_retry_after};
use crate::signing;

/// The default bootstrap endpoint (Exoscale's).
pub const DEFAULT_ENDPOINT: &str = "https://api-ch-gva-2.exoscale.com/v2";
/// How long a request signature stays valid, as egoscale does.
const SIGNATURE_TTL_SECS: i64 = 600;
/// Consecutive failed polls after which waiting on an operation gives up.
const MAX_POLL_ERRORS: u32 = 5;

/// The wait before poll number `polls` (from 0) of a pending operation: 250 ms,
/// then doubling up to `longest`. Most operations take a second or two, and a
/// caller waiting on two in a row (an NLB, then its service) would otherwise
/// lose up to a whole interval on each.
pub fn poll_delay(polls: u32, longest: Duration) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(polls.min(16))).min(longest)
}

/// How to reach the orchestrator and how patient to be with it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap endpoint, including `/v2`.
    pub endpoint: String,
    /// Zone to switch to through `GET /zone`; `None` keeps the bootstrap endpoint.
    pub zone: Option<String>,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
    /// Retries of failed attempts.
    pub retry: RetryPolicy,
    /// Longest interval between polls of a pending operation (the first polls
    /// come sooner: see [`poll_delay`]).
    pub operation_poll_interval: Duration,
    /// How long to wait for an operation overall.
    pub operation_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            zone: None,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            operation_poll_interval: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(600),
            user_agent: concat!("sks-orchestrator/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ClientConfig {
    /// Endpoint and zone from the Exoscale CCM's variables: `EXOSCALE_API_ENDPOINT`,
    /// `EXOSCALE_API_ZONE` (else the legacy `EXOSCALE_ZONE`).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ClientConfig {
            endpoint: var("EXOSCALE_API_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            zone: var("EXOSCALE_API_ZONE").or_else(|| var("EXOSCALE_ZONE")),
            ..ClientConfig::default()
        }
    }
}

/// A client of one zone's orchestrator API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    credentials: CredentialSource,
    metrics: Option<ClientMetrics>,
    config: ClientConfig,
    /// Shared with the clients of other zones made from this one.
    expiries: Arc<Expiries>,
}

/// Hands out signature expiries so that this client never sends the same signed
/// request twice. A signature covers the request and its expiry in whole
/// seconds: a retry (or a second identical write) within the same second would
/// repeat the signature, which a server with replay protection refuses as a
/// replay. Writes whose signed message was already signed with an expiry this
/// second or later get the next second instead. Reads may repeat (a replay of a
/// read changes nothing, and a sks-zone only refuses replayed writes), so polls
/// keep the plain expiry and never drift ahead.
#[derive(Default)]
pub(crate) struct Expiries {
    last: std::sync::Mutex<std::collections::HashMap<[u8; 32], i64>>,
}

impl Expiries {
    /// The expiry to sign `req` with at `now` (UNIX seconds).
    pub(crate) fn next(&self, req: &signing::Request<'_>, now: i64) -> i64 {
        let base = now + SIGNATURE_TTL_SECS;
        if matches!(req.method, "GET" | "HEAD") {
            return base;
        }
        use sha2::Digest as _;
        let names: Vec<&str> = signing::signed_query_params(req.query).into_iter().map(|(k, _)| k).collect();
        let digest: [u8; 32] = sha2::Sha256::digest(signing::message(req, &names, 0)).into();
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An expiry below `base` can no longer be handed out again: forget it.
        if last.len() > 256 {
            last.retain(|_, e| *e >= base);
        }
        let expires = match last.get(&digest) {
            Some(&prev) if prev >= base => prev + 1,
            _ => base,
        };
        last.insert(digest, expires);
        expires
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.inner.endpoint.as_str()).finish_non_exhaustive()
    }
}

fn parse_endpoint(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| Error::Config(format!("endpoint {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!("endpoint {raw:?}: scheme must be http or https")));
    }
    Ok(url)
}

impl Client {
    /// Builds a client and, when `config.zone` is set, switches to that zone's endpoint.
    pub async fn connect(
        config: ClientConfig,
        credentials: CredentialSource,
        metrics: Option<ClientMetrics>,
    ) -> Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", error_chain(&e))))?;
        let endpoint = parse_endpoint(&config.endpoint)?;
        let expiries = Arc::default();
        let mut client = Client { inner: Arc::new(Inner { http, endpoint, credentials, metrics, config, expiries }) };
        if let Some(zone) = client.inner.config.zone.clone() {
            client = client.switch_zone(&zone).await?;
        }
        Ok(client)
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// A client of `zone`, found by name or api-endpoint in `GET /zone`.
    pub async fn switch_zone(&self, zone: &str) -> Result<Self> {
        let zones = self.list_zones().await?;
        let found =
            zones.iter().find(|z| z.name == zone || z.api_endpoint.as_deref() == Some(zone)).ok_or_else(|| {
                let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                Error::Config(format!("zone {zone:?} is not served by {}; known: {names:?}", self.inner.endpoint))
            })?;
        let endpoint =
            found.api_endpoint.as_deref().ok_or_else(|| Error::Config(format!("zone {zone:?} has no api-endpoint")))?;
        let inner = Inner {
            http: self.inner.http.clone(),
            endpoint: parse_endpoint(endpoint)?,
            credentials: match &self.inner.credentials {
                CredentialSource::Static(c) => CredentialSource::Static(c.clone()),
                CredentialSource::File { path, .. } => CredentialSource::file(path.clone()),
            },
            metrics: self.inner.metrics.clone(),
            config: self.inner.config.clone(),
            expiries: self.inner.expiries.clone(),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> Result<Url> {
        let mut url = self.inner.endpoint.clone();
        url.set_path(&format!("{}{}", self.inner.endpoint.path().trim_end_matches('/'), path));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k, v)));
        }
        Ok(url)
    }

    /// One call with retries; decodes a JSON answer into `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let bytes = self.call_raw(operation, method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode { operation, message: e.to_string() })
    }

    async fn call_raw(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes> {
        let url = self.url(path, query)?;
        let idempotent = method != Method::POST;
        let body = body.unwrap_or_default();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (failure, error) = match self.attempt(operation, &method, &url, query, &body).await {
                Ok(bytes) => return Ok(bytes),
                Err(pair) => pair,
            };
            let Some(delay) = self.inner.config.retry.delay(attempt, failure, idempotent, rand::random::<f64>()) else {
                return Err(error);
            };
            let reason = match failure {
                Failure::Connect => "connect".to_owned(),
                Failure::InFlight => "in_flight".to_owned(),
                Failure::Status(code, _) => code.to_string(),
            };
            tracing::debug!(operation, attempt, ?delay, %reason, error = %error, "retrying orchestrator call");
            if let Some(m) = &self.inner.metrics {
                m.retries.with_label_values(&[operation, &reason]).inc();
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        operation: &'static str,
        method: &Method,
        url: &Url,
        query: &[(String, String)],
        body: &[u8],
    ) -> std::result::Result<bytes::Bytes, (Failure, Error)> {
        let creds = self.inner.credentials.current().map_err(|e| (Failure::Status(401, None), e))?;
        let sig_req = signing::Request { method: method.as_str(), path: url.path(), query, body };
        // Every attempt is signed afresh, and never with the signature of an earlier one.
        let expires = self.inner.expiries.next(&sig_req, jiff::Timestamp::now().as_second());
        let authorization = signing::authorization(creds.api_key(), creds.api_secret(), &sig_req, expires);
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(http::header::AUTHORIZATION, authorization)
            .timeout(self.inner.config.request_timeout);
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        let started = Instant::now();
        let sent = req.send().await;
        let observe = |code: &str| {
            if let Some(m) = &self.inner.metrics {
                m.requests.with_label_values(&[operation, code]).inc();
                m.latency.with_label_values(&[operation]).observe(started.elapsed().as_secs_f64());
            }
        };
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                observe("error");
                return Err(transport_failure(operation, &e, self.inner.config.request_timeout));
            }
        };
        let status = response.status();
        let retry_after =
            response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                observe("error");
                return Err(transport_failure(operation, &e, self.inner.config.request_timeout));
            }
        };
        observe(status.as_str());
        if status.is_success() {
            return Ok(bytes);
        }
        let message = error_message(&bytes);
        let code = status.as_u16();
        let error = match code {
            404 => Error::NotFound { operation, message },
            409 => Error::Conflict { operation, message },
            401 | 403 => Error::Forbidden { operation, status: code, message },
            400 | 422 => Error::Invalid { operation, message },
            429 => Error::RateLimited { operation, message, retry_after },
            500..=599 => Error::Unavailable { operation, status: code, message },
            _ => Error::Status { operation, status: code, message },
        };
        Err((Failure::Status(code, retry_after), error))
    }

    /// Waits until `op` leaves `pending`; `failure` and `timeout` become errors.
    pub async fn wait(&self, op: Operation) -> Result<Operation> {
        let deadline = Instant::now() + self.inner.config.operation_timeout;
        let mut op = op;
        let mut poll_errors = 0;
        let mut polls = 0;
        loop {
            match &op.state {
                OperationState::Success => return Ok(op),
                OperationState::Pending => {}
                state => {
                    return Err(Error::OperationFailed {
                        id: op.id,
                        state: state.clone(),
                        reason: op.reason.clone(),
                        message: op.message.clone().unwrap_or_default(),
                    });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::OperationTimeout { id: op.id, after: self.inner.config.operation_timeout });
            }
            tokio::time::sleep(poll_delay(polls, self.inner.config.operation_poll_interval).min(deadline - now)).await;
            polls += 1;
            match self.get_operation(op.id).await {
                Ok(next) => {
                    op = next;
                    poll_errors = 0;
                }
                Err(e) if e.is_transient() && poll_errors + 1 < MAX_POLL_ERRORS => poll_errors += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, operation: &'static str, path: &str) -> Result<T> {
        self.call(operation, Method::GET, path, &[], None).await
    }

    /// Sends a mutating call and waits for its operation to succeed.
    async fn mutate<B: Serialize + ?Sized>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Operation> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Config(format!("{operation}: cannot encode body: {e}")))?;
        let op: Operation = self.call(operation, method, path, &[], body).await?;
        self.wait(op).await
    }

    async fn mutate_empty(&self, operation: &'static str, method: Method, path: &str) -> Result<Operation> {
        self.mutate::<()>(operation, method, path, None).await
    }

    // ---- zone and operations -------------------------------------------------

    /// `GET /zone`.
    pub async fn list_zones(&self) -> Result<Vec<Zone>> {
        Ok(self.get::<ZoneList>("list-zones", "/zone").await?.zones)
    }

    /// `GET /operation/{id}`.
    pub async fn get_operation(&self, id: Uuid) -> Result<Operation> {
        self.get("get-operation", &format!("/operation/{id}")).await
    }

    // ---- instances -----------------------------------------------------------

    /// `GET /instance` with optional filters.
    pub async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        let mut query = Vec::new();
        if let Some(id) = filter.manager_id {
            query.push(("manager-id".to_owned(), id.to_string()));
        }
        if let Some(kind) = &filter.manager_type {
            query.push(("manager-type".to_owned(), kind.to_string()));
        }
        if let Some(ip) = &filter.ip_address {
            query.push(("ip-address".to_owned(), ip.clone()));
        }
        let list: InstanceList = self.call("list-instances", Method::GET, "/instance", &query, None).await?;
        Ok(list.instances)
    }

    /// `GET /instance/{id}`.
    pub async fn get_instance(&self, id: Uuid) -> Result<Instance> {
        self.get("get-instance", &format!("/instance/{id}")).await
    }

    /// `POST /instance`; the operation references the new instance.
    pub async fn create_instance(&self, body: &CreateInstance) -> Result<Operation> {
        self.mutate("create-instance", Method::POST, "/instance", Some(body)).await
    }

    /// `PUT /instance/{id}`.
    pub async fn update_instance(&self, id: Uuid, body: &UpdateInstance) -> Result<Operation> {
        self.mutate("update-instance", Method::PUT, &format!("/instance/{id}"), Some(body)).await
    }

    /// `DELETE /instance/{id}`.
    pub async fn delete_instance(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("delete-instance", Method::DELETE, &format!("/instance/{id}")).await
    }

    /// `PUT /instance/{id}:start`.
    pub async fn start_instance(&self, id: Uuid) -> Result<Operation> {
        let body = serde_json::json!({});
        self.mutate("start-instance", Method::PUT, &format!("/instance/{id}:start"), Some(&body)).await
    }

    /// `PUT /instance/{id}:stop`.
    pub async fn stop_instance(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("stop-instance", Method::PUT, &format!("/instance/{id}:stop")).await
    }

    /// `PUT /instance/{id}:reboot`.
    pub async fn reboot_instance(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("reboot-instance", Method::PUT, &format!("/instance/{id}:reboot")).await
    }

    /// `PUT /instance/{id}:reset`.
    pub async fn reset_instance(&self, id: Uuid, body: &ResetInstance) -> Result<Operation> {
        self.mutate("reset-instance", Method::PUT, &format!("/instance/{id}:reset"), Some(body)).await
    }

    /// `PUT /instance/{id}:scale`.
    pub async fn scale_instance(&self, id: Uuid, body: &ScaleInstance) -> Result<Operation> {
        self.mutate("scale-instance", Method::PUT, &format!("/instance/{id}:scale"), Some(body)).await
    }

    /// `PUT /instance/{id}:resize-disk`.
    pub async fn resize_instance_disk(&self, id: Uuid, body: &ResizeInstanceDisk) -> Result<Operation> {
        self.mutate("resize-instance-disk", Method::PUT, &format!("/instance/{id}:resize-disk"), Some(body)).await
    }

    /// `DELETE /instance/{id}/{field}`.
    pub async fn reset_instance_field(&self, id: Uuid, field: &str) -> Result<Operation> {
        self.mutate_empty("reset-instance-field", Method::DELETE, &format!("/instance/{id}/{field}")).await
    }

    // ---- instance types ------------------------------------------------------

    /// `GET /instance-type`.
    pub async fn list_instance_types(&self) -> Result<Vec<InstanceType>> {
        Ok(self.get::<InstanceTypeList>("list-instance-types", "/instance-type").await?.instance_types)
    }

    /// `GET /instance-type/{id}`.
    pub async fn get_instance_type(&self, id: Uuid) -> Result<InstanceType> {
        self.get("get-instance-type", &format!("/instance-type/{id}")).await
    }

    // ---- instance pools ------------------------------------------------------

    /// `POST /instance-pool`; the operation references the new pool.
    pub async fn create_instance_pool(&self, body: &CreateInstancePool) -> Result<Operation> {
        self.mutate("create-instance-pool", Method::POST, "/instance-pool", Some(body)).await
    }

    /// `GET /instance-pool`.
    pub async fn list_instance_pools(&self) -> Result<Vec<InstancePool>> {
        Ok(self.get::<InstancePoolList>("list-instance-pools", "/instance-pool").await?.instance_pools)
    }

    /// `GET /instance-pool/{id}`.
    pub async fn get_instance_pool(&self, id: Uuid) -> Result<InstancePool> {
        self.get("get-instance-pool", &format!("/instance-pool/{id}")).await
    }

    /// `PUT /instance-pool/{id}`.
    pub async fn update_instance_pool(&self, id: Uuid, body: &UpdateInstancePool) -> Result<Operation> {
        self.mutate("update-instance-pool", Method::PUT, &format!("/instance-pool/{id}"), Some(body)).await
    }

    /// `DELETE /instance-pool/{id}`.
    pub async fn delete_instance_pool(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("delete-instance-pool", Method::DELETE, &format!("/instance-pool/{id}")).await
    }

    /// `PUT /instance-pool/{id}:scale`.
    pub async fn scale_instance_pool(&self, id: Uuid, size: i64) -> Result<Operation> {
        let body = ScaleRequest { size };
        self.mutate("scale-instance-pool", Method::PUT, &format!("/instance-pool/{id}:scale"), Some(&body)).await
    }

    /// `PUT /instance-pool/{id}:evict`.
    pub async fn evict_instance_pool_members(&self, id: Uuid, instances: Vec<Uuid>) -> Result<Operation> {
        let body = EvictRequest { instances };
        self.mutate("evict-instance-pool-members", Method::PUT, &format!("/instance-pool/{id}:evict"), Some(&body))
            .await
    }

    /// `DELETE /instance-pool/{id}/{field}`.
    pub async fn reset_instance_pool_field(&self, id: Uuid, field: &str) -> Result<Operation> {
        self.mutate_empty("reset-instance-pool-field", Method::DELETE, &format!("/instance-pool/{id}/{field}")).await
    }

    // ---- network load balancers ---------------------------------------------

    /// `POST /load-balancer`; the operation references the new NLB.
    pub async fn create_load_balancer(&self, body: &CreateLoadBalancer) -> Result<Operation> {
        self.mutate("create-load-balancer", Method::POST, "/load-balancer", Some(body)).await
    }

    /// `GET /load-balancer`.
    pub async fn list_load_balancers(&self) -> Result<Vec<LoadBalancer>> {
        Ok(self.get::<LoadBalancerList>("list-load-balancers", "/load-balancer").await?.load_balancers)
    }

    /// `GET /load-balancer/{id}`.
    pub async fn get_load_balancer(&self, id: Uuid) -> Result<LoadBalancer> {
        self.get("get-load-balancer", &format!("/load-balancer/{id}")).await
    }

    /// `PUT /load-balancer/{id}`.
    pub async fn update_load_balancer(&self, id: Uuid, body: &UpdateLoadBalancer) -> Result<Operation> {
        self.mutate("update-load-balancer", Method::PUT, &format!("/load-balancer/{id}"), Some(body)).await
    }

    /// `DELETE /load-balancer/{id}`.
    pub async fn delete_load_balancer(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("delete-load-balancer", Method::DELETE, &format!("/load-balancer/{id}")).await
    }

    /// `DELETE /load-balancer/{id}/{field}`.
    pub async fn reset_load_balancer_field(&self, id: Uuid, field: &str) -> Result<Operation> {
        self.mutate_empty("reset-load-balancer-field", Method::DELETE, &format!("/load-balancer/{id}/{field}")).await
    }

    /// `POST /load-balancer/{id}/service`; the operation references the NLB, not the service.
    pub async fn add_service_to_load_balancer(&self, id: Uuid, body: &AddLoadBalancerService) -> Result<Operation> {
        self.mutate("add-service-to-load-balancer", Method::POST, &format!("/load-balancer/{id}/service"), Some(body))
            .await
    }

    /// `GET /load-balancer/{id}/service/{service-id}`.
    pub async fn get_load_balancer_service(&self, id: Uuid, service: Uuid) -> Result<LoadBalancerService> {
        self.get("get-load-balancer-service", &format!("/load-balancer/{id}/service/{service}")).await
    }

    /// `PUT /load-balancer/{id}/service/{service-id}`.
    pub async fn update_load_balancer_service(
        &self,
        id: Uuid,
        service: Uuid,
        body: &UpdateLoadBalancerService,
    ) -> Result<Operation> {
        let path = format!("/load-balancer/{id}/service/{service}");
        self.mutate("update-load-balancer-service", Method::PUT, &path, Some(body)).await
    }

    /// `DELETE /load-balancer/{id}/service/{service-id}`.
    pub async fn delete_load_balancer_service(&self, id: Uuid, service: Uuid) -> Result<Operation> {
        let path = format!("/load-balancer/{id}/service/{service}");
        self.mutate_empty("delete-load-balancer-service", Method::DELETE, &path).await
    }

    /// `DELETE /load-balancer/{id}/service/{service-id}/{field}`.
    pub async fn reset_load_balancer_service_field(&self, id: Uuid, service: Uuid, field: &str) -> Result<Operation> {
        let path = format!("/load-balancer/{id}/service/{service}/{field}");
        self.mutate_empty("reset-load-balancer-service-field", Method::DELETE, &path).await
    }

    // ---- SKS clusters --------------------------------------------------------

    /// `POST /sks-cluster`; the operation references the new cluster.
    pub async fn create_sks_cluster(&self, body: &CreateSksCluster) -> Result<Operation> {
        self.mutate("create-sks-cluster", Method::POST, "/sks-cluster", Some(body)).await
    }

    /// `GET /sks-cluster`, each with its nodepools.
    pub async fn list_sks_clusters(&self) -> Result<Vec<SksCluster>> {
        Ok(self.get::<SksClusterList>("list-sks-clusters", "/sks-cluster").await?.sks_clusters)
    }

    /// `GET /sks-cluster/{id}`.
    pub async fn get_sks_cluster(&self, id: Uuid) -> Result<SksCluster> {
        self.get("get-sks-cluster", &format!("/sks-cluster/{id}")).await
    }

    /// `PUT /sks-cluster/{id}`.
    pub async fn update_sks_cluster(&self, id: Uuid, body: &UpdateSksCluster) -> Result<Operation> {
        self.mutate("update-sks-cluster", Method::PUT, &format!("/sks-cluster/{id}"), Some(body)).await
    }

    /// `DELETE /sks-cluster/{id}`.
    pub async fn delete_sks_cluster(&self, id: Uuid) -> Result<Operation> {
        self.mutate_empty("delete-sks-cluster", Method::DELETE, &format!("/sks-cluster/{id}")).await
    }

    /// `PUT /sks-cluster/{id}/upgrade`.
    pub async fn upgrade_sks_cluster(&self, id: Uuid, version: &str) -> Result<Operation> {
        let body = UpgradeSksCluster { version: version.to_owned() };
        self.mutate("upgrade-sks-cluster", Method::PUT, &format!("/sks-cluster/{id}/upgrade"), Some(&body)).await
    }

    /// `PUT /sks-cluster/{id}/upgrade` without waiting: the operation stays
    /// pending while the control plane is replaced; `wait` follows it.
    pub async fn start_upgrade_sks_cluster(&self, id: Uuid, version: &str) -> Result<Operation> {
        let body = serde_json::to_vec(&UpgradeSksCluster { version: version.to_owned() })
            .map_err(|e| Error::Config(format!("upgrade-sks-cluster: cannot encode body: {e}")))?;
        self.call("upgrade-sks-cluster", Method::PUT, &format!("/sks-cluster/{id}/upgrade"), &[], Some(body)).await
    }

    /// `PUT /sks-cluster/{id}/upgrade-service-level` (starter to pro).
    pub async fn upgrade_sks_cluster_service_level(&self, id: Uuid) -> Result<Operation> {
        let path = format!("/sks-cluster/{id}/upgrade-service-level");
        self.mutate_empty("upgrade-sks-cluster-service-level", Method::PUT, &path).await
    }

    /// `PUT /sks-cluster/{id}/{action}` for the credential and CA rotations
    /// (`rotate-ccm-credentials`, `rotate-csi-credentials`, `rotate-karpenter-credentials`,
    /// `rotate-operators-ca`).
    pub async fn rotate_sks_cluster(&self, id: Uuid, action: RotateAction) -> Result<Operation> {
        let path = format!("/sks-cluster/{id}/{}", action.path());
        self.mutate_empty(action.operation_id(), Method::PUT, &path).await
    }

    /// `GET /sks-cluster-version`, newest first.
    pub async fn list_sks_cluster_versions(&self) -> Result<Vec<String>> {
        Ok(self
            .get::<SksClusterVersions>("list-sks-cluster-versions", "/sks-cluster-version")
            .await?
            .sks_cluster_versions)
    }

    /// `POST /sks-cluster-kubeconfig/{id}`: the kubeconfig YAML (decoded from base64).
    pub async fn generate_sks_cluster_kubeconfig(&self, id: Uuid, req: &KubeconfigRequest) -> Result<String> {
        use base64::Engine as _;
        let operation = "generate-sks-cluster-kubeconfig";
        let body = serde_json::to_vec(req).map_err(|e| Error::Config(e.to_string()))?;
        let path = format!("/sks-cluster-kubeconfig/{id}");
        let resp: KubeconfigResponse = self.call(operation, Method::POST, &path, &[], Some(body)).await?;
        let yaml = base64::engine::general_purpose::STANDARD
            .decode(resp.kubeconfig.trim())
            .map_err(|e| Error::Decode { operation, message: format!("kubeconfig is not base64: {e}") })?;
        String::from_utf8(yaml).map_err(|_| Error::Decode { operation, message: "kubeconfig is not UTF-8".into() })
    }

    /// `GET /sks-cluster/{id}/authority/{authority}/cert`: the CA certificate PEM.
    pub async fn get_sks_cluster_authority_cert(&self, id: Uuid, authority: Authority) -> Result<String> {
        use base64::Engine as _;
        let operation = "get-sks-cluster-authority-cert";
        let cert: AuthorityCert = self.get(operation, &format!("/sks-cluster/{id}/authority/{authority}/cert")).await?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cert.cacert.trim())
            .map_err(|e| Error::Decode { operation, message: format!("cacert is not base64: {e}") })?;
        String::from_utf8(pem).map_err(|_| Error::Decode { operation, message: "cacert is not UTF-8".into() })
    }

    /// `GET /sks-cluster-deprecated-resources/{id}`.
    pub async fn list_sks_cluster_deprecated_resources(&self, id: Uuid) -> Result<Vec<DeprecatedResource>> {
        self.get("list-sks-cluster-deprecated-resources", &format!("/sks-cluster-deprecated-resources/{id}")).await
    }

    /// `GET /sks-cluster/{id}/inspection`: free-form diagnostics.
    pub async fn get_sks_cluster_inspection(&self, id: Uuid) -> Result<serde_json::Value> {
        self.get("get-sks-cluster-inspection", &format!("/sks-cluster/{id}/inspection")).await
    }

    /// `GET /sks-template/{kube-version}/{variant}`.
    pub async fn get_active_nodepool_template(&self, version: &str, variant: &str) -> Result<ActiveTemplate> {
        self.get("get-active-nodepool-template", &format!("/sks-template/{version}/{variant}")).await
    }

    // ---- SKS nodepools -------------------------------------------------------

    /// `POST /sks-cluster/{id}/nodepool`; the operation references the new nodepool.
    pub async fn create_sks_nodepool(&self, cluster: Uuid, body: &CreateSksNodepool) -> Result<Operation> {
        self.mutate("create-sks-nodepool", Method::POST, &format!("/sks-cluster/{cluster}/nodepool"), Some(body)).await
    }

    /// `GET /sks-cluster/{id}/nodepool/{sks-nodepool-id}`.
    pub async fn get_sks_nodepool(&self, cluster: Uuid, nodepool: Uuid) -> Result<SksNodepool> {
        self.get("get-sks-nodepool", &format!("/sks-cluster/{cluster}/nodepool/{nodepool}")).await
    }

    /// `PUT /sks-cluster/{id}/nodepool/{sks-nodepool-id}`.
    pub async fn update_sks_nodepool(
        &self,
        cluster: Uuid,
        nodepool: Uuid,
        body: &UpdateSksNodepool,
    ) -> Result<Operation> {
        let path = format!("/sks-cluster/{cluster}/nodepool/{nodepool}");
        self.mutate("update-sks-nodepool", Method::PUT, &path, Some(body)).await
    }

    /// `DELETE /sks-cluster/{id}/nodepool/{sks-nodepool-id}`.
    pub async fn delete_sks_nodepool(&self, cluster: Uuid, nodepool: Uuid) -> Result<Operation> {
        let path = format!("/sks-cluster/{cluster}/nodepool/{nodepool}");
        self.mutate_empty("delete-sks-nodepool", Method::DELETE, &path).await
    }

    /// `PUT /sks-cluster/{id}/nodepool/{sks-nodepool-id}:scale`.
    pub async fn scale_sks_nodepool(&self, cluster: Uuid, nodepool: Uuid, size: i64) -> Result<Operation> {
        let path = format!("/sks-cluster/{cluster}/nodepool/{nodepool}:scale");
        self.mutate("scale-sks-nodepool", Method::PUT, &path, Some(&ScaleRequest { size })).await
    }

    /// `PUT /sks-cluster/{id}/nodepool/{sks-nodepool-id}:evict`.
    pub async fn evict_sks_nodepool_members(
        &self,
        cluster: Uuid,
        nodepool: Uuid,
        instances: Vec<Uuid>,
    ) -> Result<Operation> {
        let path = format!("/sks-cluster/{cluster}/nodepool/{nodepool}:evict");
        self.mutate("evict-sks-nodepool-members", Method::PUT, &path, Some(&EvictRequest { instances })).await
    }
}

/// The cluster rotations the API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateAction {
    /// New credentials for the CCM.
    CcmCredentials,
    /// New credentials for the CSI driver.
    CsiCredentials,
    /// New credentials for Karpenter.
    KarpenterCredentials,
    /// A new operators CA.
    OperatorsCa,
}

impl RotateAction {
    fn path(self) -> &'static str {
        match self {
            RotateAction::CcmCredentials => "rotate-ccm-credentials",
            RotateAction::CsiCredentials => "rotate-csi-credentials",
            RotateAction::KarpenterCredentials => "rotate-karpenter-credentials",
            RotateAction::OperatorsCa => "rotate-operators-ca",
        }
    }

    fn operation_id(self) -> &'static str {
        match self {
            RotateAction::CcmCredentials => "rotate-sks-ccm-credentials",
            RotateAction::CsiCredentials => "rotate-sks-csi-credentials",
            RotateAction::KarpenterCredentials => "rotate-sks-karpenter-credentials",
            RotateAction::OperatorsCa => "rotate-sks-operators-ca",
        }
    }
}

fn transport_failure(operation: &'static str, e: &reqwest::Error, timeout: Duration) -> (Failure, Error) {
    if e.is_connect() {
        return (Failure::Connect, Error::Transport { operation, message: error_chain(e) });
    }
    if e.is_timeout() {
        return (Failure::InFlight, Error::Timeout { operation, after: timeout });
    }
    (Failure::InFlight, Error::Transport { operation, message: error_chain(e) })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The message of an error body: `message`, else RFC 9457 `detail`/`title`, else `error`, else the text.
fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "detail", "title", "error"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".to_owned() } else { text.chars().take(500).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_polled_soon_then_at_the_interval() {
        let second = Duration::from_secs(1);
        let delays: Vec<u128> = (0..5).map(|n| poll_delay(n, second).as_millis()).collect();
        assert_eq!(delays, vec![250, 500, 1000, 1000, 1000]);
        assert_eq!(poll_delay(u32::MAX, second), second, "no overflow");
        assert_eq!(poll_delay(0, Duration::from_millis(10)), Duration::from_millis(10), "a shorter interval caps all");
    }

    #[test]
    fn a_write_is_never_signed_twice_with_the_same_expiry() {
        let e = Expiries::default();
        let now = 1_700_000_000;
        let put =
            signing::Request { method: "PUT", path: "/v2/instance-pool/x:scale", query: &[], body: b"{\"size\":3}" };
        let got: Vec<i64> = (0..5).map(|_| e.next(&put, now)).collect();
        let base = now + SIGNATURE_TTL_SECS;
        assert_eq!(got, vec![base, base + 1, base + 2, base + 3, base + 4]);
        // Another body, path or query is another message: no bump.
        let other = signing::Request { body: b"{\"size\":4}", ..put };
        assert_eq!(e.next(&other, now), base);
        // Once the clock passes the bumped expiries, writes are back to the plain one.
        assert_eq!(e.next(&put, now + 10), base + 10);
        // Reads may repeat: no bump, so polling never drifts ahead.
        let get = signing::Request { method: "GET", path: "/v2/operation/x", query: &[], body: b"" };
        assert_eq!((e.next(&get, now), e.next(&get, now)), (base, base));
        // Unsigned query parameters do not make another signature.
        let q = vec![("a".to_owned(), String::new())];
        let put_q = signing::Request { query: &q, ..put };
        assert_eq!(e.next(&put_q, now + 10), base + 11);
    }

    #[test]
    fn expiries_are_forgotten_once_they_cannot_collide() {
        let e = Expiries::default();
        for i in 0..1000u32 {
            let body = i.to_string();
            e.next(
                &signing::Request { method: "POST", path: "/v2/x", query: &[], body: body.as_bytes() },
                i64::from(i),
            );
        }
        assert!(e.last.lock().unwrap().len() <= 257, "{}", e.last.lock().unwrap().len());
    }
}
