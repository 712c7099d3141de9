//! The state every handler shares.

use crate::engine::Wakeups;
use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use wharf_store::Store;

/// When an instance counts as online.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// How often agents are told to send heartbeats.
    pub heartbeat_interval: Duration,
    /// An instance is `offline` when no heartbeat came for this long.
    pub offline_after: Duration,
}

impl Default for Liveness {
    /// Heartbeats every 10 s; offline after three missed ones, so that one slow
    /// request does not flap the status.
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            offline_after: Duration::from_secs(30),
        }
    }
}

impl Liveness {
    /// `online` when the last heartbeat is recent enough.
    pub fn status(
        &self,
        last_heartbeat_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> &'static str {
        match last_heartbeat_at {
            Some(at)
                if now.signed_duration_since(at).to_std().unwrap_or_default()
                    < self.offline_after =>
            {
                "online"
            }
            _ => "offline",
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub secrets: SecretBox,
    pub metrics: Arc<Metrics>,
    pub wakeups: Wakeups,
    pub liveness: Liveness,
    /// Heartbeats waiting to be written together.
    pub heartbeats: crate::heartbeats::HeartbeatWriter,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox) -> Self {
        Self {
            store,
            secrets,
            metrics: Arc::new(Metrics::default()),
            wakeups: Wakeups::default(),
            liveness: Liveness::default(),
            heartbeats: Default::default(),
        }
    }
}
