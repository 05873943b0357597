//! The zone's shared state and the two ways to touch it: read under the lock,
//! or write a transaction that is persisted before the caller is answered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::Store;
use crate::world::{Tx, World};

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Zones served; the first also answers on the bare `/v2` prefix.
    pub zones: Vec<String>,
    /// Base URL clients reach the zone at, for `api-endpoint`.
    pub public_url: String,
    /// How long operations stay `pending`.
    pub operation_delay: Duration,
    /// How long new instances stay `starting`.
    pub boot_delay: Duration,
    /// How long an upgrade takes to replace one control-plane component.
    pub component_upgrade: Duration,
    /// API server URL reported for every cluster, instead of a made-up one.
    pub cluster_endpoint: Option<String>,
    /// Whether the NLB data plane runs, so answers carry `healthcheck-status`.
    pub nlb_dataplane: bool,
}

/// The zone: configuration, state, storage and accepted API keys.
pub struct App {
    /// Settings fixed at start.
    pub config: Config,
    world: Mutex<World>,
    store: Store,
    /// Accepted API keys and their secrets.
    pub keys: BTreeMap<String, String>,
    faults: Mutex<crate::admin::Faults>,
    /// Bumped after every commit that changed something, so followers of the
    /// state (the NLB data plane) react at once instead of polling.
    generation: tokio::sync::watch::Sender<u64>,
    /// NLB backend health as the data plane's checks last found it.
    pub health: crate::dataplane::HealthBoard,
    /// Signatures of the writes accepted and not yet expired (replay protection).
    pub replays: crate::auth::ReplayGuard,
    /// The orchestrator API calls answered (`GET /admin/requests`).
    pub journal: crate::journal::Journal,
}

/// An API error answered as `{"message": ...}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, naming the field or resource.
    pub message: String,
}

impl ApiError {
    /// 400 with a message naming the field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    /// 404 for a resource that does not exist.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message: format!("{kind} {id} not found") }
    }
    /// 409 for a conflicting or busy state.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::CONFLICT, message: message.into() }
    }
    /// 403 for something the caller may not do.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::FORBIDDEN, message: message.into() }
    }
    /// 500 for the zone's own failures.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

/// Result of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl App {
    /// Loads the state from `store`.
    pub fn new(config: Config, store: Store, keys: BTreeMap<String, String>) -> anyhow::Result<Self> {
        let world = World::load(store.load()?, &config.zones)?;
        Ok(App {
            config,
            world: Mutex::new(world),
            store,
            keys,
            faults: Mutex::default(),
            generation: tokio::sync::watch::Sender::new(0),
            health: crate::dataplane::HealthBoard::default(),
            replays: crate::auth::ReplayGuard::default(),
            journal: crate::journal::Journal::default(),
        })
    }

    /// A receiver that sees a new value after every commit that changed the state.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The faults injected now.
    pub fn faults(&self) -> crate::admin::Faults {
        self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Changes the injected faults.
    pub fn set_faults(&self, faults: crate::admin::Faults) {
        *self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs `f` as one transaction: its changes are on disk before this returns.
    /// A failing `f` must not have changed anything it does not want kept, so
    /// handlers validate before they mutate.
    pub fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> ApiResult<T>) -> ApiResult<T> {
        let mut world = self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tx = Tx::new(&mut world);
        let out = f(&mut tx);
        let changes = tx.into_changes().map_err(|e| ApiError::internal(format!("encoding state: {e}")))?;
        // The write may have succeeded only in memory: answering anyway would
        // acknowledge a change a restart forgets, so the zone stops instead.
        let committed = tokio::task::block_in_place(|| self.store.commit(&changes));
        if let Err(e) = committed {
            tracing::error!(error = %e, "cannot persist state; stopping so no unsaved change is acknowledged");
            std::process::abort();
        }
        if !changes.is_empty() {
            // Still under the world lock: a follower woken now reads this commit or a later one.
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
        out
    }
}
