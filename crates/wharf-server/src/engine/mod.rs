//! The release engine: the driver that moves every active release forward and
//! the scaling groups' leases and hooks that hang off its pass. All state lives
//! in the store, so a restarted server simply reconciles again. What the engine
//! creates (automatic rollbacks, catch-ups) and the work it dispatches go through
//! the service layer (`ops`), as the server itself ([`crate::ops::Caller::server`]).

pub mod driver;
pub mod scaling;
