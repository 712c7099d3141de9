//! `GET /api/v1/releases/{id}` of a large release. The full view of a release lists
//! every instance with its steps: at 10,000 instances that is some 40,000 step rows
//! read, a view built and about 4 MB of JSON, for every read — and a CLI following
//! the release, a console or a script polling it read it over and over while the
//! release runs. So the JSON of a release of at least [`LARGE_RELEASE_INSTANCES`]
//! instances is kept and served again for up to [`REFRESH_AFTER`]; an older copy is
//! still served while a new one is built in the background (one build at a time per
//! release). A change of the release's own state (running, paused, succeeded, …) is
//! always seen at once: each read checks the release's row, and a copy of another
//! state is never served. The driver starts the new build as it changes the state,
//! and reads that find the state changed wait for that build (one build at a time,
//! for all releases) instead of starting their own. So only per-instance progress
//! can lag, by about a second, and only on large releases; smaller ones are built
//! on every read.

use crate::engine::actions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_domain::release::ReleaseState;

/// From how many instances a release's view is kept.
pub const LARGE_RELEASE_INSTANCES: u32 = 1000;
/// How old a kept view may be before a read starts building a new one.
pub const REFRESH_AFTER: Duration = Duration::from_millis(1000);
/// More large releases than are ever read at once; past it the cache starts over.
const MAX_KEPT: usize = 64;

struct Kept {
    built_at: Instant,
    /// The release's state when the view was built.
    state: String,
    json: Bytes,
    /// Whether a background build is under way.
    refreshing: bool,
}

/// The kept views, by release id.
#[derive(Clone, Default)]
pub struct ReleaseViews {
    kept: Arc<Mutex<HashMap<String, Kept>>>,
    /// Held while a view of a large release is built: reads that need a new view
    /// wait for the build under way and then use it, instead of each building one.
    building: Arc<tokio::sync::Mutex<()>>,
}

impl ReleaseViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The full view of a release as JSON; see the module's comment for when it is
/// a kept copy. `current` is the release's state as its version was just read
/// ([`Version::state`]): a kept copy of another state is not served.
pub async fn release_json(state: &AppState, id: &str, current: ReleaseState) -> ApiResult<Bytes> {
    let kept = state
        .release_views
        .lock()
        .get(id)
        .map(|k| (k.state.clone(), k.json.clone(), k.built_at.elapsed()));
    let Some((kept_state, json, age)) = kept else {
        return build(state, id).await;
    };
    if current.as_str() == kept_state {
        if age >= REFRESH_AFTER {
            refresh_in_background(state, id);
        }
        return Ok(json);
    }
    // The release's state changed since the copy was built. The driver starts a
    // new build as it changes the state (`release_changed`), so wait for the
    // build under way, if any, and use what it kept when it matches.
    let _building = state.release_views.building.lock().await;
    let kept = state
        .release_views
        .lock()
        .get(id)
        .filter(|k| k.state == current.as_str())
        .map(|k| k.json.clone());
    match kept {
        Some(json) => Ok(json),
        None => build(state, id).await,
    }
}

/// The driver changed a release's state: a kept view of it is rebuilt at once,
/// so that the reads that follow find the new state ready rather than each
/// waiting for a build of their own.
pub fn release_changed(state: &AppState, id: &str) {
    if !state.release_views.lock().contains_key(id) {
        return;
    }
    let state = state.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let _building = state.release_views.building.lock().await;
        if let Err(err) = build(&state, &id).await {
            // The next read builds it (or answers the error itself).
            tracing::warn!(release = %id, error = ?err, "rebuilding a kept release view failed");
        }
    });
}

/// Builds the view, keeps it if the release is large, and returns its JSON.
async fn build(state: &AppState, id: &str) -> ApiResult<Bytes> {
    let started = Instant::now();
    let view = actions::release_view(state, id).await?;
    let read = started.elapsed();
    let json = Bytes::from(serde_json::to_vec(&view).map_err(|err| {
        tracing::error!(release = id, error = %err, "a release view could not be encoded");
        ApiError::internal()
    })?);
    tracing::debug!(
        release = id,
        instances = view.counts.total,
        read_ms = read.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        bytes = json.len(),
        "release view built"
    );
    let mut kept = state.release_views.lock();
    if view.counts.total >= LARGE_RELEASE_INSTANCES {
        if kept.len() >= MAX_KEPT && !kept.contains_key(id) {
            kept.clear();
        }
        kept.insert(
            id.to_owned(),
            Kept {
                built_at: Instant::now(),
                state: view.state,
                json: json.clone(),
                refreshing: false,
            },
        );
    } else {
        kept.remove(id);
    }
    Ok(json)
}

fn refresh_in_background(state: &AppState, id: &str) {
    {
        let mut kept = state.release_views.lock();
        match kept.get_mut(id) {
            Some(k) if !k.refreshing => k.refreshing = true,
            _ => return,
        }
    }
    let state = state.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let _building = state.release_views.building.lock().await;
        if let Err(err) = build(&state, &id).await {
            // The next read tries again (or answers the error itself).
            tracing::warn!(release = %id, error = ?err, "refreshing a kept release view failed");
            if let Some(k) = state.release_views.lock().get_mut(&id) {
                k.refreshing = false;
            }
        }
    });
}

/// The longest a read may wait for a release to change.
pub const MAX_WAIT_SECS: u64 = 30;

/// What a read of a release's version saw.
pub struct Version {
    /// A short token that changes whenever the release's state or any of its
    /// instances' states changes (not on every step): what a follower passes back
    /// as `after` to wait for the next change.
    pub tag: String,
    /// The release's state.
    pub state: ReleaseState,
    /// How many instances the release has.
    instances: u32,
}

/// The release's version, read now.
pub async fn release_version(state: &AppState, id: &str) -> ApiResult<Version> {
    use sha2::{Digest as _, Sha256};
    let record = state.store.release_fetch(id).await?;
    let batches = state.store.task_batch_summaries(id).await?;
    let mut text = format!(
        "{}|{:?}|{:?}|{}|{:?}",
        record.state.as_str(),
        record.started_at,
        record.finished_at,
        record.continued_through,
        record.message
    );
    for b in &batches {
        text.push_str(&format!(
            "|{}:{}:{}:{}:{}:{}:{}",
            b.batch, b.pending, b.dispatched, b.running, b.succeeded, b.failed, b.cancelled
        ));
    }
    Ok(Version {
        tag: hex::encode(&Sha256::digest(text.as_bytes())[..8]),
        state: record.state,
        instances: batches
            .iter()
            .map(|b| b.open() + b.succeeded + b.failed + b.cancelled)
            .sum(),
    })
}

/// Waits until the release's version differs from `after`, for at most
/// `wait_secs` (bounded by [`MAX_WAIT_SECS`]) or until the server shuts down, and
/// returns the version it saw last. The release is looked at every 10 ms while it
/// is small, every 250 ms once it is large (each look counts its tasks).
pub async fn wait_for_change(
    state: &AppState,
    id: &str,
    after: &str,
    wait_secs: u64,
) -> ApiResult<Version> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs.min(MAX_WAIT_SECS));
    let mut version = release_version(state, id).await?;
    let every = if version.instances >= LARGE_RELEASE_INSTANCES {
        Duration::from_millis(250)
    } else {
        Duration::from_millis(10)
    };
    while version.tag == after && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.wakeups.shutting_down() => break,
        }
        version = release_version(state, id).await?;
    }
    Ok(version)
}
