//! Wharf's pure model: identifiers, resource names, validation rules and release
//! planning. Nothing here does IO; every other crate builds on these rules so that the
//! API, the CLI and the store agree on what a valid resource is.

pub mod access;
pub mod deployment;
pub mod error;
pub mod ids;
pub mod names;
pub mod registry;
pub mod release;
pub mod script_check;

pub use error::ValidationError;
