//! Typed model of the orchestrator API's resources and bodies (orchestrator-api.md §4).
//!
//! JSON keys are kebab-case; unknown fields are tolerated on input so a newer
//! orchestrator does not break us; enums the real API may extend keep the raw
//! value in an `Unknown` variant.

mod common;
mod instance;
mod instance_pool;
mod load_balancer;
mod operation;
mod sks;

pub use common::*;
pub use instance::*;
pub use instance_pool::*;
pub use load_balancer::*;
pub use operation::*;
pub use sks::*;
