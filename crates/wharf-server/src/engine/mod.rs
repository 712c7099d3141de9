//! The release engine: planning a release when it is created, the driver that
//! moves every active release forward, and the wake-ups that connect them to
//! waiting agents. All state lives in the store; the engine keeps only wake-up
//! handles in memory, so a restarted server simply reconciles again.

pub mod actions;
pub mod create;
pub mod driver;
pub mod exec;
pub mod notify;
pub mod scaling;

pub use notify::{DispatchFirst, Wakeups};
