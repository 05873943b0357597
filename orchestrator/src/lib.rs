//! The zonal orchestrator API (an Exoscale API v2 subset): typed model,
//! request signing, and a client with retries, operation polling and metrics.
//! Nothing here knows about Kubernetes.

pub mod client;
pub mod credentials;
pub mod error;
pub mod metrics;
pub mod model;
pub mod nodepool;
pub mod retry;
pub mod signing;
pub mod versions;

pub use client::{Client, ClientConfig, RotateAction};
pub use credentials::{CredentialSource, Credentials};
pub use error::{Error, Result};
pub use metrics::ClientMetrics;
pub use retry::RetryPolicy;

/// Makes ring rustls' process-wide crypto provider: reqwest is built without
/// one so that aws-lc's C build stays out of the tree. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
