//! The state every handler shares.

use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::notify::{DispatchFirst, Wakeups};
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

/// How long a heartbeat waits for others to share its transaction. An agent's
/// heartbeat runs beside its work and comes every few seconds, so 50 ms more for
/// its answer changes nothing it does, and offline detection counts in tens of
/// seconds.
const HEARTBEAT_LINGER: Duration = Duration::from_millis(50);
/// How long a credential found in the store is trusted without looking again.
/// It outlasts several heartbeat intervals, so that an agent's credential is not
/// read again every interval: with 10,000 agents, a shorter time made those reads
/// a twentieth of the server's work during a release. Of the instance, requests
/// use its id, name and credential, which do not change while it exists, and its
/// Docker status, which this server updates in the cache as it records it.
const CREDENTIAL_KEPT_FOR: Duration = Duration::from_secs(60);

/// What every handler and the engine share. Cloned for every request (axum's
/// `State` extractor), so it is one `Arc`: a clone is one count, not one per
/// field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub secrets: SecretBox,
    pub metrics: Arc<Metrics>,
    pub wakeups: Wakeups,
    /// Holds step reports back while a dispatched batch's agents get their work.
    pub dispatch_first: DispatchFirst,
    pub liveness: Liveness,
    /// Heartbeats waiting to be written together.
    pub heartbeats: GroupCommit<HeartbeatRecord>,
    /// Step reports waiting to be written together.
    pub agent_writes: GroupCommit<AgentWrite>,
    /// The work of recent releases, by release id, as every instance of a release
    /// gets it (with the instance's id left empty): building it reads the release,
    /// its deployment and registry and decrypts the registry password, which a
    /// release of thousands of instances would otherwise do once per instance.
    /// Deployments never change; an entry is still rebuilt after 5 s, so that a
    /// changed registry password reaches the instances of a running release soon.
    pub assignments: RecentMap<Arc<WorkAssignment>>,
    /// Held while an entry of `assignments` is built, so that it is built once.
    pub assignment_building: tokio::sync::Mutex<()>,
    /// Agent credentials recently found in the store, by the credential's hash,
    /// with their instance. Every agent request (heartbeats alone are a thousand a
    /// second at 10,000 agents) would otherwise read the store to check its
    /// credential. An entry is used for [`CREDENTIAL_KEPT_FOR`] at most; deleting
    /// an instance through this server removes its entry at once, so a deleted
    /// instance's credential stops working at once here (and within that time on
    /// another server sharing the store).
    pub agent_credentials: RecentMap<Arc<InstanceRecord>>,
    /// The JSON of large releases' views, kept for a moment.
    pub release_views: crate::view_cache::ReleaseViews,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox) -> Self {
        Self::with_liveness(store, secrets, Liveness::default())
    }

    /// With the given heartbeat interval and offline threshold.
    pub fn with_liveness(store: Arc<dyn Store>, secrets: SecretBox, liveness: Liveness) -> Self {
        Self(Arc::new(Shared {
            store,
            secrets,
            metrics: Arc::new(Metrics::default()),
            wakeups: Wakeups::default(),
            dispatch_first: Default::default(),
            liveness,
            heartbeats: GroupCommit::lingering(HEARTBEAT_LINGER),
            agent_writes: Default::default(),
            // More releases than ever run at once.
            assignments: RecentMap::new(Duration::from_secs(5), 256),
            assignment_building: tokio::sync::Mutex::new(()),
            // More than the agents one server holds.
            agent_credentials: RecentMap::new(CREDENTIAL_KEPT_FOR, 200_000),
            release_views: Default::default(),
        }))
    }
}

/// A map whose entries are used for a while after they were put in (`fresh_for`),
/// then ignored until put in again: what the server keeps in memory of what the
/// store holds, so that thousands of agents' requests do not each read it. At
/// `max` entries the stale ones are dropped, and if that is not enough, all.
#[derive(Clone)]
pub struct RecentMap<V> {
    entries: Arc<Mutex<HashMap<String, (Instant, V)>>>,
    fresh_for: Duration,
    max: usize,
}

impl<V: Clone> RecentMap<V> {
    pub fn new(fresh_for: Duration, max: usize) -> Self {
        Self {
            entries: Arc::default(),
            fresh_for,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, if it is still fresh.
    pub fn get(&self, key: &str) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.fresh_for)
            .map(|(_, value)| value.clone())
    }

    pub fn insert(&self, key: &str, value: V) {
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(key) {
            map.retain(|_, (at, _)| at.elapsed() < self.fresh_for);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Replaces the value of an entry that exists, keeping its age.
    pub fn update(&self, key: &str, value: V) {
        if let Some((_, kept)) = self.lock().get_mut(key) {
            *kept = value;
        }
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}
