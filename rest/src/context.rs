//! Who asks, and how: what every storage and strategy call is given.

use super::authn::UserInfo;

pub use super::authn::BoxFuture;

/// Who asks, and how.
#[derive(Debug, Clone)]
pub struct Context {
    /// The authenticated user.
    pub user: UserInfo,
    /// Namespace of the request, for namespaced resources.
    pub namespace: Option<String>,
    /// Validate only, change nothing.
    pub dry_run: bool,
}
