//! The service layer: every operation the API, the console or the engine performs
//! on Wharf's resources, one module per resource (like omicron's
//! `nexus/src/app`). Each operation is a function taking the server's state, the
//! [`Caller`] who asks, and its input, and returning an [`OpError`] — never an
//! HTTP type. `api/` and `console/` are adapters over these functions; the engine
//! calls them for what it creates (automatic rollbacks, catch-ups) and for the
//! work it hands out. Operations use the store, the wake-ups (`notify.rs`), the
//! views and the release view cache; they never import `api`, `console` or the
//! engine.

pub mod agents;
pub mod apps;
pub mod caller;
pub mod deployments;
pub mod error;
pub mod execs;
pub mod groups;
pub mod instances;
pub mod registries;
pub mod releases;
pub mod scaling;
pub mod script_checks;
pub mod tokens;
pub mod work;

pub use caller::{Caller, Role};
pub use error::{Conflict, OpError, OpResult};

#[cfg(test)]
mod tests;
