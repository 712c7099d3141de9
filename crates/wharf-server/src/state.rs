//! The state every handler shares.

use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use std::sync::Arc;
use std::time::Duration;
use wharf_store::Store;

/// How often agents send heartbeats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// An instance is `offline` when no heartbeat came for this long: three missed
/// heartbeats, so one slow request does not flap the status.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub secrets: SecretBox,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox) -> Self {
        Self {
            store,
            secrets,
            metrics: Arc::new(Metrics::default()),
        }
    }
}
