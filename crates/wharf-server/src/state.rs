//! The state every handler shares.

use crate::engine::Wakeups;
use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use wharf_api::WorkAssignment;
use wharf_store::{AgentWrite, HeartbeatRecord, InstanceRecord, Store};

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
    pub heartbeats: GroupCommit<HeartbeatRecord>,
    /// Step reports waiting to be written together.
    pub agent_writes: GroupCommit<AgentWrite>,
    /// Claims waiting to be written together: a queue of their own, so that a
    /// batch's agents get their work without waiting behind the step reports of
    /// the agents that got theirs first.
    pub claims: GroupCommit<AgentWrite>,
    /// The work of recent releases, as every instance gets it.
    pub assignments: Assignments,
    /// Agents' credentials recently checked.
    pub agent_credentials: AgentCredentials,
    /// The JSON of large releases' views, kept for a moment.
    pub release_views: crate::release_views::ReleaseViews,
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
            agent_writes: Default::default(),
            claims: Default::default(),
            assignments: Default::default(),
            agent_credentials: Default::default(),
            release_views: Default::default(),
        }
    }
}

/// The work of recent releases, by release id, as every instance of a release
/// gets it (with the instance's id left empty): building it reads the release, its
/// deployment and registry and decrypts the registry password, which a release of
/// thousands of instances would otherwise do once per instance. Deployments never
/// change; an entry is still rebuilt after [`Assignments::FRESH_FOR`], so that a
/// changed registry password reaches the instances of a running release soon.
#[derive(Clone, Default)]
pub struct Assignments(Arc<Mutex<HashMap<String, BuiltAt>>>);

/// When an entry was built, and the work.
type BuiltAt = (Instant, Arc<WorkAssignment>);

impl Assignments {
    /// More releases than ever run at once.
    const MAX: usize = 256;
    /// How long an entry is used before it is built again.
    pub const FRESH_FOR: Duration = Duration::from_secs(5);

    pub fn get(&self, release_id: &str) -> Option<Arc<WorkAssignment>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(release_id)
            .filter(|(at, _)| at.elapsed() < Self::FRESH_FOR)
            .map(|(_, work)| work.clone())
    }

    pub fn insert(&self, release_id: &str, work: Arc<WorkAssignment>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX {
            map.retain(|_, (at, _)| at.elapsed() < Self::FRESH_FOR);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(release_id.to_owned(), (Instant::now(), work));
    }
}

/// Agent credentials recently found in the store, by the credential's hash, with
/// their instance. Every agent request (heartbeats alone are a thousand a second
/// at 10,000 agents) would otherwise read the store to check its credential. An
/// entry is used for [`AgentCredentials::FRESH_FOR`] at most; deleting an instance
/// through this server forgets its entry at once, so a deleted instance's
/// credential stops working at once here (and within that time on another server
/// sharing the store).
#[derive(Clone, Default)]
pub struct AgentCredentials(Arc<Mutex<HashMap<String, CheckedAt>>>);

/// When a credential was found, and its instance.
type CheckedAt = (Instant, InstanceRecord);

impl AgentCredentials {
    /// More than the agents one server holds; past it the cache starts over.
    const MAX: usize = 200_000;
    /// How long an entry is used before the store is asked again.
    pub const FRESH_FOR: Duration = Duration::from_secs(10);

    pub fn get(&self, hash: &str) -> Option<InstanceRecord> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .filter(|(at, _)| at.elapsed() < Self::FRESH_FOR)
            .map(|(_, instance)| instance.clone())
    }

    pub fn insert(&self, hash: &str, instance: InstanceRecord) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(hash.to_owned(), (Instant::now(), instance));
    }

    /// Updates the cached instance (what its agent reported about Docker), keeping
    /// the entry's age.
    pub fn update(&self, instance: &InstanceRecord) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, cached)) = map.get_mut(&instance.credential_hash) {
            *cached = instance.clone();
        }
    }

    /// Forgets a deleted instance's credential.
    pub fn forget(&self, instance: &InstanceRecord) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&instance.credential_hash);
    }
}
