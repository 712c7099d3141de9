//! Wharf's wire types: every JSON body that crosses HTTP, between the CLI or console
//! and the server (`/api/v1/`) and between agents and the server (`/agent/v1/`).
//! These are the only types in the workspace that derive `Serialize`, so the shape
//! of the protocol is visible in one place.

pub mod agent;
pub mod error;
pub mod releases;
pub mod resources;
pub mod scaling;

pub use error::{ErrorBody, ErrorDetail};
pub use releases::*;
pub use resources::*;
pub use scaling::*;

/// The version of the HTTP API, part of every path.
pub const API_PREFIX: &str = "/api/v1";
