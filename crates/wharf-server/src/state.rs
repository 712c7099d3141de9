//! The state every handler shares.

use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::notify::{DispatchFirst, Wakeups};
pub use crate::recent::RecentMap;
use crate::secrets::SecretBox;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// How long a heartbeat may wait to be stored before this server counts it as
    /// unable to hear heartbeats (a stalled store): a sixth of the offline
    /// threshold (5 s by default), at least a second. Heartbeats are normally
    /// stored within some 100 ms, even from 10,000 agents.
    pub fn stall_after(&self) -> Duration {
        (self.offline_after / 6).max(Duration::from_secs(1))
    }
}

/// The liveness rule at one moment: an instance is `offline` when no heartbeat
/// came for `offline_after` of the time this server could have heard one.
#[derive(Debug, Clone, Copy)]
pub struct LivenessJudge {
    pub offline_after: Duration,
    /// Since when this server has been able to receive and store heartbeats (its
    /// start, or the end of a stall); `None` while it cannot (heartbeats fail to be
    /// stored or wait too long), when nobody is judged offline.
    pub heard_since: Option<DateTime<Utc>>,
}

impl LivenessJudge {
    /// `online` when the last heartbeat, or the start of the time this server could
    /// hear heartbeats if that is later, is recent enough. So after a restart or a
    /// stall every instance has a grace of one offline threshold to be heard from:
    /// its silence before then says nothing, as its heartbeats could not land.
    pub fn status(
        &self,
        last_heartbeat_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> &'static str {
        let Some(heard_since) = self.heard_since else {
            return "online";
        };
        let silent_since = last_heartbeat_at.map_or(heard_since, |at| at.max(heard_since));
        if now
            .signed_duration_since(silent_since)
            .to_std()
            .unwrap_or_default()
            < self.offline_after
        {
            "online"
        } else {
            "offline"
        }
    }

    /// Whether a task whose deadline is `deadline` is past it, by the same grace:
    /// reports of steps that ended in time may still be on their way after a
    /// restart or a stall (agents journal them and send them again).
    pub fn past_deadline(&self, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let Some(heard_since) = self.heard_since else {
            return false;
        };
        let grace_ends = heard_since
            + chrono::Duration::from_std(self.offline_after).unwrap_or(chrono::Duration::MAX);
        now > deadline && now > grace_ends
    }
}

/// Since when this server has been able to hear heartbeats: its start, moved
/// forward to the end of every stall. A stall is a time when heartbeats could not
/// be stored (a write of them failed or waited longer than
/// [`Liveness::stall_after`]) or when the driver itself did not run (the process
/// was paused): agents' heartbeats in that time were lost or late through no fault
/// of theirs, so the offline clock starts again when it ends.
#[derive(Debug)]
pub struct Hearing {
    state: Mutex<HearingState>,
}

#[derive(Debug)]
struct HearingState {
    since: DateTime<Utc>,
    stalled: bool,
}

impl Hearing {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            state: Mutex::new(HearingState {
                since: now,
                stalled: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HearingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records whether heartbeats can be stored now; the end of a stall starts
    /// every instance's offline clock again.
    pub fn observe(&self, stalled: bool, now: DateTime<Utc>) {
        let mut state = self.lock();
        if stalled && !state.stalled {
            tracing::warn!(
                "heartbeats cannot be stored; no instance is judged offline until they can"
            );
        } else if !stalled && state.stalled {
            tracing::info!("heartbeats are stored again; every instance has one offline threshold to be heard from");
            state.since = now;
        }
        state.stalled = stalled;
    }

    /// Starts every instance's offline clock again at `now` (e.g. after the
    /// process was found to have been paused).
    pub fn restart_at(&self, now: DateTime<Utc>) {
        self.lock().since = now;
    }

    /// Since when heartbeats could be heard; `None` during a stall.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        let state = self.lock();
        (!state.stalled).then_some(state.since)
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
    /// Since when heartbeats could be heard (see [`Hearing`]).
    pub hearing: Hearing,
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
    /// Failure budgets, refused secrets and the in-flight bound (overload.rs).
    pub guard: crate::overload::Guard,
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
            hearing: Hearing::new(Utc::now()),
            heartbeats: GroupCommit::lingering(HEARTBEAT_LINGER),
            agent_writes: Default::default(),
            // More releases than ever run at once.
            assignments: RecentMap::new(Duration::from_secs(5), 256),
            assignment_building: tokio::sync::Mutex::new(()),
            // More than the agents one server holds.
            agent_credentials: RecentMap::new(CREDENTIAL_KEPT_FOR, 200_000),
            release_views: Default::default(),
            guard: Default::default(),
        }))
    }
}

impl Shared {
    /// The liveness rule as it stands now. Looks first at whether heartbeats can be
    /// stored, so that a read never judges by heartbeats that could not land.
    pub fn liveness_judge(&self) -> LivenessJudge {
        let health = self.heartbeats.health();
        let stalled = health.failing || health.backlog_age > self.liveness.stall_after();
        self.hearing.observe(stalled, Utc::now());
        LivenessJudge {
            offline_after: self.liveness.offline_after,
            heard_since: self.hearing.since(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn judge(heard_since: Option<i64>) -> LivenessJudge {
        LivenessJudge {
            offline_after: Duration::from_secs(30),
            heard_since: heard_since.map(at),
        }
    }

    #[test]
    fn an_instance_is_offline_after_the_threshold_of_silence() {
        let judge = judge(Some(0));
        assert_eq!(judge.status(Some(at(100)), at(129)), "online");
        assert_eq!(judge.status(Some(at(100)), at(130)), "offline");
        assert_eq!(judge.status(None, at(30)), "offline");
    }

    #[test]
    fn silence_from_before_the_server_could_hear_counts_from_then() {
        // Started (or un-stalled) at 100: a heartbeat of 10 says nothing until 130.
        let judge = judge(Some(100));
        assert_eq!(judge.status(Some(at(10)), at(129)), "online");
        assert_eq!(judge.status(Some(at(10)), at(130)), "offline");
        assert_eq!(judge.status(None, at(129)), "online");
    }

    #[test]
    fn nobody_is_offline_or_past_a_deadline_while_heartbeats_cannot_be_stored() {
        let judge = judge(None);
        assert_eq!(judge.status(Some(at(0)), at(1000)), "online");
        assert!(!judge.past_deadline(at(0), at(1000)));
    }

    #[test]
    fn a_deadline_counts_once_the_grace_is_over() {
        let judge = judge(Some(100));
        assert!(!judge.past_deadline(at(50), at(120)), "within the grace");
        assert!(judge.past_deadline(at(50), at(131)));
        assert!(
            !judge.past_deadline(at(200), at(150)),
            "before the deadline"
        );
    }

    #[test]
    fn the_end_of_a_stall_starts_the_offline_clock_again() {
        let hearing = Hearing::new(at(0));
        assert_eq!(hearing.since(), Some(at(0)));
        hearing.observe(false, at(5));
        assert_eq!(hearing.since(), Some(at(0)), "no stall, no change");
        hearing.observe(true, at(10));
        assert_eq!(hearing.since(), None);
        hearing.observe(true, at(50));
        hearing.observe(false, at(70));
        assert_eq!(hearing.since(), Some(at(70)));
        hearing.restart_at(at(90));
        assert_eq!(hearing.since(), Some(at(90)));
    }

    #[test]
    fn stall_after_is_a_sixth_of_the_threshold_and_at_least_a_second() {
        assert_eq!(Liveness::default().stall_after(), Duration::from_secs(5));
        let quick = Liveness {
            heartbeat_interval: Duration::from_secs(1),
            offline_after: Duration::from_secs(3),
        };
        assert_eq!(quick.stall_after(), Duration::from_secs(1));
    }
}
