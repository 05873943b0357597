//! A running `sks-zone` process.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use orchestrator::{Client, ClientConfig, CredentialSource, Credentials, RetryPolicy};

use crate::logs::Logs;
use crate::{TempDir, bin};

/// API key every test zone accepts.
pub const TEST_KEY: &str = "EXOtestkey";
/// Its secret.
pub const TEST_SECRET: &str = "test-secret-do-not-log";

/// Points a process at the zone whose bootstrap endpoint is `endpoint`, with the test key.
pub fn orchestrator_env<'c>(endpoint: &str, cmd: &'c mut Command) -> &'c mut Command {
    cmd.env("EXOSCALE_API_ENDPOINT", endpoint)
        .env("EXOSCALE_API_ZONE", "ch-gva-2")
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", TEST_SECRET)
        .env_remove("EXOSCALE_API_CREDENTIALS_FILE")
}

/// Options of a test zone.
#[derive(Debug, Clone, Default)]
pub struct ZoneOptions {
    /// `--operation-delay-ms`.
    pub operation_delay_ms: u64,
    /// `--instance-boot-delay-ms` (default 0 here: instances run at once).
    pub boot_delay_ms: u64,
    /// `--seed`.
    pub seed: bool,
    /// Extra arguments.
    pub extra: Vec<String>,
    /// Where it logs.
    pub logs: Logs,
}

/// A running `sks-zone` with its own state directory; killed on drop.
pub struct Zone {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    options: ZoneOptions,
    state: TempDir,
}

fn spawn(state: &Path, options: &ZoneOptions, listen: &str) -> (Child, String) {
    let mut cmd = Command::new(bin("sks-zone"));
    cmd.args(["--listen", listen, "--state-dir"])
        .arg(state)
        .args(["--api-key", TEST_KEY, "--api-secret", TEST_SECRET])
        .args(["--operation-delay-ms", &options.operation_delay_ms.to_string()])
        .args(["--instance-boot-delay-ms", &options.boot_delay_ms.to_string()])
        .args(&options.extra)
        .env_remove("KUBECONFIG");
    if options.seed {
        cmd.arg("--seed");
    }
    let (child, first) = options.logs.spawn(&mut cmd, "sks-zone");
    let url = first
        .strip_prefix("sks-zone listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line from sks-zone: {first:?}"))
        .to_owned();
    (child, url)
}

impl Zone {
    /// Starts a zone on a free port with a fresh state directory.
    pub fn start(options: ZoneOptions) -> Zone {
        let state = TempDir::new("zone");
        let (child, url) = spawn(state.path(), &options, "127.0.0.1:0");
        Zone { child: Some(child), url, options, state }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The bootstrap endpoint, `<url>/v2`.
    pub fn endpoint(&self) -> String {
        format!("{}/v2", self.url)
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        crate::kill_child(&mut self.child);
    }

    /// Stops the process with SIGTERM: its exit status, `None` if it did not stop within 5 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        crate::terminate_child(&mut self.child)
    }

    /// Restarts the zone with its simulated kubelets registering in the API of `kubeconfig`.
    pub fn attach_kubelets(&mut self, kubeconfig: &std::path::Path) {
        self.restart_with(&["--kubeconfig".to_owned(), kubeconfig.display().to_string()]);
    }

    /// Starts the zone again on the same address and state with `extra` arguments
    /// added for good (e.g. `--kubeconfig`, known only once the cluster exists).
    pub fn restart_with(&mut self, extra: &[String]) {
        self.options.extra.extend_from_slice(extra);
        self.restart();
    }

    /// Starts the zone again on the same address and state directory.
    pub fn restart(&mut self) {
        self.kill9();
        let listen = self.url.trim_start_matches("http://").to_owned();
        let (child, url) = spawn(self.state.path(), &self.options, &listen);
        assert_eq!(url, self.url);
        self.child = Some(child);
    }

    /// Points a process at this zone the way the Exoscale CCM reads it (endpoint, zone, test key).
    pub fn orchestrator_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        orchestrator_env(&self.endpoint(), cmd)
    }

    /// Client settings for this zone with fast retries and polling.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            endpoint: self.endpoint(),
            zone: Some("ch-gva-2".to_owned()),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
            },
            operation_poll_interval: Duration::from_millis(20),
            operation_timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        }
    }

    /// A client of this zone signing with the test key.
    pub async fn client(&self) -> Client {
        client_for(self.client_config()).await
    }
}

/// A client with the test key for `config`.
pub async fn client_for(config: ClientConfig) -> Client {
    let creds = CredentialSource::Static(Credentials::new(TEST_KEY, TEST_SECRET).expect("test credentials"));
    Client::connect(config, creds, None).await.expect("connecting to sks-zone")
}

impl Drop for Zone {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The expiry to sign a request with, `expires_in` seconds from now. The zone
/// refuses a signed write it has already accepted (a replay), so, as the
/// orchestrator client does, a write repeated within the same second is signed
/// with the next expiry second instead.
pub fn signature_expiry(method: &str, path: &str, body: &str, expires_in: i64) -> i64 {
    let expires = jiff::Timestamp::now().as_second() + expires_in;
    if matches!(method, "GET" | "HEAD") || expires_in <= 0 {
        return expires;
    }
    static LAST: std::sync::Mutex<Option<std::collections::HashMap<String, i64>>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let prev = last.get_or_insert_default().entry(format!("{method} {path} {body}")).or_insert(i64::MIN);
    *prev = expires.max(prev.saturating_add(1));
    *prev
}

/// Sends one request signed with the test key (or `key`/`secret`) and an
/// expiry `expires_in` seconds away; returns status and JSON body.
pub async fn signed_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    credentials: Option<(&str, &str)>,
    expires_in: i64,
) -> (u16, serde_json::Value) {
    orchestrator::install_crypto_provider();
    let (key, secret) = credentials.unwrap_or((TEST_KEY, TEST_SECRET));
    let body = body.unwrap_or("");
    let url = url::Url::parse(&format!("{base}{path}")).expect("request URL");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let expires = signature_expiry(method, path, body, expires_in);
    let req = orchestrator::signing::Request { method, path: url.path(), query: &query, body: body.as_bytes() };
    let auth = orchestrator::signing::authorization(key, secret, &req, expires);
    let mut builder = reqwest::Client::new()
        .request(method.parse().expect("method"), url)
        .header("authorization", auth)
        .body(body.to_owned());
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let resp = builder.send().await.expect("sending request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("reading body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

impl Zone {
    /// Injects faults: `ratio` of the answers to `operations` (all when `None`) get `status`.
    pub async fn set_faults(&self, ratio: f64, status: u16, operations: Option<&[&str]>) {
        self.set_faults_after(ratio, status, operations, false).await;
    }

    /// As `set_faults`; with `after`, the request is carried out before the fault is answered.
    pub async fn set_faults_after(&self, ratio: f64, status: u16, operations: Option<&[&str]>, after: bool) {
        let body =
            serde_json::json!({"ratio": ratio, "status": status, "operations": operations, "after": after}).to_string();
        let (code, answer) = signed_request(&self.url, "PUT", "/admin/faults", Some(&body), None, 600).await;
        assert_eq!(code, 200, "{answer}");
    }
}

impl Zone {
    /// Sends a signed `/admin/...` request (`path` starts with `/admin/`): status and JSON body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        let body = body.map(serde_json::Value::to_string);
        signed_request(&self.url, method, path, body.as_deref(), None, 600).await
    }

    /// The orchestrator API calls the zone answered (`GET /admin/requests`), oldest
    /// first: those of `operations` (operation ids), every one when empty.
    pub async fn requests(&self, operations: &[&str]) -> Vec<serde_json::Value> {
        let path = match operations {
            [] => "/admin/requests".to_owned(),
            ops => format!("/admin/requests?operation={}", ops.join(",")),
        };
        let (code, answer) = self.admin("GET", &path, None).await;
        assert_eq!(code, 200, "{answer}");
        answer["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Makes the simulated kubelet of nodepool instance `instance` report its Node
    /// Ready (`true`) or NotReady (`false`) from now on (`PUT /admin/instance/{id}/kubelet`).
    pub async fn set_kubelet_ready(&self, instance: uuid::Uuid, ready: bool) {
        let body = serde_json::json!({ "ready": ready });
        let (code, answer) = self.admin("PUT", &format!("/admin/instance/{instance}/kubelet"), Some(&body)).await;
        assert_eq!(code, 200, "{answer}");
    }

    /// Publishes an SKS version (`PUT /admin/versions`): status and JSON body
    /// (`sks-cluster-versions`, and the `auto-upgrades` it started).
    pub async fn publish_version(&self, version: &str) -> (u16, serde_json::Value) {
        self.admin("PUT", "/admin/versions", Some(&serde_json::json!({ "version": version }))).await
    }
}

impl Zone {
    /// Replaces the injected faults with `faults`: `{"rules": [...]}` or one rule (README: sks-zone).
    pub async fn set_fault_rules(&self, faults: serde_json::Value) {
        let (code, answer) = self.admin("PUT", "/admin/faults", Some(&faults)).await;
        assert_eq!(code, 200, "{answer}");
    }

    /// Turns every injected fault off.
    pub async fn clear_faults(&self) {
        self.set_fault_rules(serde_json::json!({"rules": []})).await;
    }

    /// What the zone injected since it started (`GET /admin/faults` `counts`): `calls`,
    /// `delayed`, `delay-ms`, `status` (by code), `resets`, `failed-operations`, `pending-operations`.
    pub async fn fault_counts(&self) -> serde_json::Value {
        let (code, answer) = self.admin("GET", "/admin/faults", None).await;
        assert_eq!(code, 200, "{answer}");
        answer["counts"].clone()
    }
}

/// As [`signed_request`], but a transport failure (the zone is down, the
/// connection dropped) is returned instead of failing the test.
pub async fn try_signed_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    orchestrator::install_crypto_provider();
    let body = body.unwrap_or("");
    let url = url::Url::parse(&format!("{base}{path}")).expect("request URL");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let expires = signature_expiry(method, path, body, 600);
    let req = orchestrator::signing::Request { method, path: url.path(), query: &query, body: body.as_bytes() };
    let auth = orchestrator::signing::authorization(TEST_KEY, TEST_SECRET, &req, expires);
    let resp = reqwest::Client::new()
        .request(method.parse().expect("method"), url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}

/// A template the zone knows (it refuses unknown ones): the SKS node template
/// of its newest version.
pub async fn known_template(c: &Client) -> orchestrator::model::Ref {
    let version = c.list_sks_cluster_versions().await.expect("listing SKS versions").remove(0);
    let active = c.get_active_nodepool_template(&version, "standard").await.expect("reading the active template");
    orchestrator::model::Ref::from(active.active_template.expect("an active template"))
}
