//! `GET /api/v1/releases/{id}` of a large release. The full view of a release lists
//! every instance with its steps: at 10,000 instances that is some 40,000 step rows
//! read, a view built and about 9 MB of JSON, for every read — and a CLI following
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
//!
//! A build keeps each batch's place in the JSON with the counts it was built
//! from, and each instance's part with the task it came from; the next build of
//! the release reuses what still fits (see [`build`]): it copies the batches
//! whose counts stand as they did and whose instances were all pending or ended
//! with no step running, and reads the tasks of the others, and the steps of
//! only their instances that may have moved. So late in a release of 10,000
//! instances a build reads the few batches under way or moved since the last,
//! not 10,000 tasks and 40,000 steps; and when a release starts, pauses or ends
//! with none of its instances under way, a build after one that saw them as
//! they are reads and encodes only the release's own fields again. A large
//! release's view is built as it is created
//! ([`release_created`]), so the reads that follow its creation do not build it
//! beside its first batch.

use crate::state::AppState;
use crate::view_cache::{fitting, keep, BuiltBatch, BuiltView, InstancePart, Kept, Parts};
use crate::views;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_domain::release::ReleaseState;
use wharf_store::{
    BatchFilter, BatchSummary, ReleasePart, ReleaseRecord, StepFilter, StepRecord, StepState,
    StoreError, TaskRecord, TaskState,
};

/// Why a release's view could not be read: the store failed (or has no such
/// release), or the view could not be built (logged where it happened).
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a release view could not be built")]
    Build,
}

type ViewResult<T> = Result<T, ViewError>;

/// The automatic rollback of `release`, if it failed and has one.
pub async fn rolled_back_by(
    state: &AppState,
    release: &ReleaseRecord,
) -> Result<Option<String>, StoreError> {
    if !release.rollback_on_failure {
        return Ok(None);
    }
    // The automatic rollback of a failed release is created right after it fails,
    // so it is among the group's newest releases.
    Ok(state
        .store
        .release_list(Some(&release.app), Some(&release.group), 50)
        .await?
        .into_iter()
        .find(|r| r.rollback_of.as_deref() == Some(release.id.as_str()))
        .map(|r| r.id))
}

/// From how many instances a release's view is kept.
pub const LARGE_RELEASE_INSTANCES: u32 = 1000;
/// How old a kept view may be before a read starts building a new one.
pub const REFRESH_AFTER: Duration = Duration::from_millis(1000);
/// The full view of a release as JSON; see the module's comment for when it is
/// a kept copy. `current` is the release's state as its version was just read
/// ([`Version::state`]): a kept copy of another state is not served.
pub async fn release_json(state: &AppState, id: &str, current: ReleaseState) -> ViewResult<Bytes> {
    let kept = state
        .release_views
        .lock()
        .get(id)
        .map(|k| (k.state.clone(), k.view.json.clone(), k.built_at.elapsed()));
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
        .map(|k| k.view.json.clone());
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
    tokio::spawn(async move { build_in_turn(&state, &id, "rebuilding a kept").await });
}

/// Builds and keeps the view once no other build is under way (one build at a
/// time, for all releases); whether it could. A failure is logged: the next read
/// builds the view itself (or answers the error).
async fn build_in_turn(state: &AppState, id: &str, what: &'static str) -> bool {
    let _building = state.release_views.building.lock().await;
    match build(state, id).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(release = %id, error = ?err, "{what} release view failed");
            false
        }
    }
}

/// A large release was just created: its view is built and kept before its first
/// batch goes out, so that the reads which follow its creation find it ready (or
/// wait for a small rebuild) instead of building it beside the first dispatch.
pub async fn release_created(state: &AppState, id: &str, instances: usize) {
    if instances < LARGE_RELEASE_INSTANCES as usize {
        return;
    }
    build_in_turn(state, id, "building a new").await;
}

/// Builds the view, keeps it if the release is large, and returns its JSON. What
/// still fits of the kept copy is reused: the batches that did not move are
/// copied, and of the others only the instances whose tasks changed or may have
/// changed steps are read and encoded again.
async fn build(state: &AppState, id: &str) -> ViewResult<Bytes> {
    let started = Instant::now();
    let generation = state.release_views.builds.fetch_add(1, Ordering::Relaxed);
    let previous = state.release_views.lock().get(id).map(|k| k.view.clone());
    let part = state
        .store
        .release_detail_where(
            id,
            batches_wanted(previous.clone()),
            steps_wanted(previous.clone()),
        )
        .await?;
    let read = started.elapsed();
    let rolled_back_by = rolled_back_by(state, &part.release).await?;
    let release_state = part.release.state;
    // Encoding a large release takes tens of milliseconds of CPU: on a blocking
    // thread, so that the runtime's workers go on answering agents meanwhile
    // (with two cores, one worker held would halve how fast a batch gets its
    // work).
    let assembled =
        tokio::task::spawn_blocking(move || assemble(part, rolled_back_by, previous.as_deref()))
            .await
            .map_err(|err| {
                tracing::error!(release = id, error = %err, "encoding a release view panicked");
                ViewError::Build
            })?;
    let assembled = assembled.map_err(|err| encode_failed(id, &err))?;
    Ok(keep_built(
        state,
        id,
        started,
        read,
        generation,
        release_state,
        assembled,
    ))
}

/// Keeps the view `assembled` if the release is large (and forgets an older copy
/// if not), and returns its JSON.
fn keep_built(
    state: &AppState,
    id: &str,
    started: Instant,
    read: Duration,
    generation: u64,
    release_state: ReleaseState,
    assembled: Assembled,
) -> Bytes {
    let Assembled { view, encoded } = assembled;
    let instances = view.instances();
    tracing::debug!(
        release = id,
        instances,
        encoded,
        read_ms = read.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        bytes = view.json.len(),
        "release view built"
    );
    let json = view.json.clone();
    let mut kept = state.release_views.lock();
    if instances >= LARGE_RELEASE_INSTANCES as usize {
        keep(
            &mut kept,
            id,
            Kept {
                built_at: started,
                generation,
                state: release_state.as_str().to_owned(),
                view: Arc::new(view),
                refreshing: false,
            },
        );
    } else {
        kept.remove(id);
    }
    json
}

fn encode_failed(id: &str, err: &AssembleError) -> ViewError {
    tracing::error!(release = id, error = %err, "a release view could not be encoded");
    ViewError::Build
}

/// Picks the batches whose tasks a build must read: those `previous` has no
/// batch for that still fits.
fn batches_wanted(previous: Option<Arc<BuiltView>>) -> BatchFilter {
    Box::new(move |batch| previous.as_ref().is_none_or(|p| p.must_read(batch)))
}

/// Picks the tasks whose steps a build must read: those of the instances without
/// a fitting part in `previous`.
fn steps_wanted(previous: Option<Arc<BuiltView>>) -> StepFilter {
    Box::new(move |task| fitting(previous.as_deref(), task).is_none())
}

/// The JSON of a release's view (what `serde_json` makes of
/// [`crate::ops::releases::view`]'s answer) from `part`, read with the filters of
/// [`batches_wanted`] and [`steps_wanted`] for `previous`; with what the next
/// build may reuse and how many instances were encoded anew.
fn assemble(
    part: ReleasePart,
    rolled_back_by: Option<String>,
    previous: Option<&BuiltView>,
) -> Result<Assembled, AssembleError> {
    let ReleasePart {
        release,
        batches: summaries,
        tasks,
        steps,
    } = part;
    let batch_count = release.batch_count;
    // The view without its batches, then each batch without its instances: the
    // lists are the last fields of both, so the JSON ends in `[]}` where they go.
    let mut header = views::release(release, &[], None);
    header.counts = views::release_counts(&summaries);
    header.rolled_back_by = rolled_back_by;
    let header = serde_json::to_vec(&header)?;
    let mut steps_of: HashMap<&str, Vec<&StepRecord>> = HashMap::new();
    for step in &steps {
        steps_of.entry(&step.instance_id).or_default().push(step);
    }
    let mut encoded = 0;
    let mut built = Vec::with_capacity(batch_count as usize);
    let mut out = Vec::with_capacity(header.len() + previous.map_or(0, |p| p.json.len()));
    out.extend_from_slice(without_empty_list(&header)?);
    out.push(b'[');
    for batch in 0..batch_count {
        if batch > 0 {
            out.push(b',');
        }
        let start = out.len();
        let summary = summaries.iter().find(|s| s.batch == batch).cloned();
        // A batch that still fits was not read: its JSON is copied.
        let kept = previous.and_then(|p| {
            let kept = p.batches.get(batch as usize)?;
            kept.still_fits(summary.as_ref()?)
                .then(|| (&p.json[kept.range.clone()], kept))
        });
        if let Some((json, kept)) = kept {
            out.extend_from_slice(json);
            built.push(BuiltBatch {
                summary,
                range: start..out.len(),
                parts: kept.parts.clone(),
                settled: true,
            });
            continue;
        }
        let members: Vec<&TaskRecord> = tasks.iter().filter(|t| t.batch == batch).collect();
        let batch_header = serde_json::to_vec(&wharf_api::ReleaseBatch {
            number: batch + 1,
            state: views::batch_state(&members).to_owned(),
            instances: Vec::new(),
        })?;
        out.extend_from_slice(without_empty_list(&batch_header)?);
        out.push(b'[');
        let mut parts = Parts::with_capacity(members.len());
        for (i, task) in members.into_iter().enumerate() {
            let part = match fitting(previous, task) {
                Some(part) => part.clone(),
                None => {
                    encoded += 1;
                    let steps = steps_of
                        .get(task.instance_id.as_str())
                        .map_or(&[][..], Vec::as_slice);
                    let settled = !matches!(task.state, TaskState::Dispatched | TaskState::Running)
                        && steps.iter().all(|s| s.state != StepState::Running);
                    Arc::new(InstancePart {
                        task: task.clone(),
                        json: serde_json::to_vec(&views::release_instance(task, steps))?
                            .into_boxed_slice(),
                        settled,
                    })
                }
            };
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&part.json);
            parts.insert(task.instance_id.clone(), part);
        }
        out.extend_from_slice(b"]}");
        built.push(BuiltBatch {
            summary,
            range: start..out.len(),
            settled: parts.values().all(|p| p.settled),
            parts: Arc::new(parts),
        });
    }
    out.extend_from_slice(b"]}");
    Ok(Assembled {
        view: BuiltView {
            json: Bytes::from(out),
            batches: built,
        },
        encoded,
    })
}

/// A view as [`assemble`] made it.
struct Assembled {
    view: BuiltView,
    /// How many instances' parts were encoded anew.
    encoded: usize,
}

/// `json` without the `[]}` it ends in (an empty list as the last field).
fn without_empty_list(json: &[u8]) -> Result<&[u8], AssembleError> {
    json.strip_suffix(b"[]}").ok_or(AssembleError::ListNotLast)
}

/// Why a view could not be assembled.
#[derive(Debug, thiserror::Error)]
enum AssembleError {
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The lists the parts go into are no longer the last fields of the view.
    #[error("a release view's list of batches or instances is not its last field")]
    ListNotLast,
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
        if !build_in_turn(&state, &id, "refreshing a kept").await {
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
pub async fn release_version(state: &AppState, id: &str) -> ViewResult<Version> {
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
        instances: batches.iter().map(BatchSummary::total).sum(),
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
) -> ViewResult<Version> {
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

#[cfg(test)]
mod tests;
