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
//! A build keeps each instance's part of the JSON with the task it came from, and
//! the next build of the release reuses the parts that still fit (see [`build`]):
//! late in a release of 10,000 instances a build reads the tasks and the steps of
//! the one or two batches that moved, not 40,000 steps. A large release's view is
//! built as it is created ([`release_created`]), so the reads that follow its
//! creation do not build it beside its first batch.

use crate::engine::actions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_domain::release::ReleaseState;
use wharf_store::{
    ReleaseDetail, ReleaseRecord, StepFilter, StepRecord, StepState, TaskRecord, TaskState,
};

/// From how many instances a release's view is kept.
pub const LARGE_RELEASE_INSTANCES: u32 = 1000;
/// How old a kept view may be before a read starts building a new one.
pub const REFRESH_AFTER: Duration = Duration::from_millis(1000);
/// More large releases than are ever read at once; past it the cache starts over.
/// A kept release of 10,000 instances holds about 20 MB (its JSON and its parts).
const MAX_KEPT: usize = 16;

struct Kept {
    /// When the build that made it started, before it read the store.
    built_at: Instant,
    /// Which build made it: builds are numbered as they start, so a higher number
    /// read the store later.
    generation: u64,
    /// The release's state when the view was built.
    state: String,
    json: Bytes,
    /// Where the list of batches starts in `json`, after the release's own fields.
    batches_at: usize,
    /// Each instance's part of `json`, for the next build to reuse.
    parts: Arc<Parts>,
    /// Whether a background build is under way.
    refreshing: bool,
}

/// The instances' parts of a built view, by instance id.
type Parts = HashMap<String, Arc<InstancePart>>;

/// One instance's part of a built view: its JSON, and what it was built from.
struct InstancePart {
    task: TaskRecord,
    json: Box<[u8]>,
    /// Whether the instance's steps cannot change while its task stays as it is:
    /// the task is pending (a step begins only on a running task, which changes
    /// the task), or ended with no step running (only a running step changes).
    settled: bool,
}

/// The part of `previous` that is still the view of `task`'s instance: one made
/// from this very task, and settled.
fn fitting<'a>(previous: Option<&'a Parts>, task: &TaskRecord) -> Option<&'a Arc<InstancePart>> {
    previous?
        .get(&task.instance_id)
        .filter(|part| part.settled && part.task == *task)
}

/// The kept views, by release id.
#[derive(Clone, Default)]
pub struct ReleaseViews {
    kept: Arc<Mutex<HashMap<String, Kept>>>,
    /// Held while a view of a large release is built: reads that need a new view
    /// wait for the build under way and then use it, instead of each building one.
    building: Arc<tokio::sync::Mutex<()>>,
    /// Builds started so far: the next build's generation.
    builds: Arc<AtomicU64>,
}

impl ReleaseViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `new` as the view of release `id`, unless a build that read the store
/// later was kept already: builds may overlap (a read that finds nothing kept
/// builds without waiting), and the slower, older one must not replace the
/// newer one.
fn keep(kept: &mut HashMap<String, Kept>, id: &str, new: Kept) {
    if kept.get(id).is_some_and(|k| k.generation > new.generation) {
        return;
    }
    if kept.len() >= MAX_KEPT && !kept.contains_key(id) {
        kept.clear();
    }
    kept.insert(id.to_owned(), new);
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

/// Builds the view, keeps it if the release is large, and returns its JSON. The
/// parts of the kept copy that still fit are reused: only the instances whose
/// tasks changed or may have changed steps are read and encoded again, so that
/// late in a large release a build reads the tasks and one batch's steps, not
/// every step of the release.
async fn build(state: &AppState, id: &str) -> ApiResult<Bytes> {
    let started = Instant::now();
    let generation = state.release_views.builds.fetch_add(1, Ordering::Relaxed);
    let kept = state.release_views.lock().get(id).map(|k| {
        let unstarted = k.state == ReleaseState::Pending.as_str();
        (
            k.parts.clone(),
            unstarted.then(|| (k.json.clone(), k.batches_at)),
        )
    });
    let previous = kept.as_ref().map(|(parts, _)| parts.clone());
    // A release's tasks do not move while it is pending. When it has just
    // started (the driver rebuilds its view as it starts it, right before its
    // first batch), only the release's own fields are read and encoded again,
    // and its batches are the pending view's, byte for byte: reading 10,000
    // tasks, or even copying them, beside the first batch's dispatch slowed it.
    // A batch dispatched meanwhile shows at the next refresh, like any other
    // per-instance progress.
    if let Some((parts, Some((pending_json, batches_at)))) = &kept {
        let release = state.store.release_fetch(id).await?;
        let rolled_back_by = actions::rolled_back_by(state, &release).await?;
        if let Some(view) = started_view(release, rolled_back_by, pending_json, *batches_at, parts)
        {
            let (json, batches_at) = view.map_err(|err| encode_failed(id, &err))?;
            let built = Built {
                json: Bytes::from(json),
                batches_at,
                parts: parts.clone(),
                state: ReleaseState::Running,
                encoded: 0,
            };
            return Ok(keep_built(
                state,
                id,
                started,
                started.elapsed(),
                generation,
                built,
            ));
        }
    }
    let detail = state
        .store
        .release_detail_where(id, steps_wanted(previous.clone()))
        .await?;
    let read = started.elapsed();
    let rolled_back_by = actions::rolled_back_by(state, &detail.release).await?;
    let release_state = detail.release.state;
    // Encoding a large release takes tens of milliseconds of CPU: on a blocking
    // thread, so that the runtime's workers go on answering agents meanwhile
    // (with two cores, one worker held would halve how fast a batch gets its
    // work).
    let assembled =
        tokio::task::spawn_blocking(move || assemble(detail, rolled_back_by, previous.as_deref()))
            .await
            .map_err(|err| {
                tracing::error!(release = id, error = %err, "encoding a release view panicked");
                ApiError::internal()
            })?;
    let assembled = assembled.map_err(|err| encode_failed(id, &err))?;
    let built = Built {
        json: Bytes::from(assembled.json),
        batches_at: assembled.batches_at,
        parts: Arc::new(assembled.parts),
        state: release_state,
        encoded: assembled.encoded,
    };
    Ok(keep_built(state, id, started, read, generation, built))
}

/// A view just built.
struct Built {
    json: Bytes,
    batches_at: usize,
    parts: Arc<Parts>,
    /// The release's state in the view.
    state: ReleaseState,
    /// How many instances' parts were encoded anew.
    encoded: usize,
}

/// Keeps `built` if the release is large (and forgets an older copy if not), and
/// returns its JSON.
fn keep_built(
    state: &AppState,
    id: &str,
    started: Instant,
    read: Duration,
    generation: u64,
    built: Built,
) -> Bytes {
    let instances = built.parts.len();
    tracing::debug!(
        release = id,
        instances,
        encoded = built.encoded,
        read_ms = read.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        bytes = built.json.len(),
        "release view built"
    );
    let mut kept = state.release_views.lock();
    if instances >= LARGE_RELEASE_INSTANCES as usize {
        keep(
            &mut kept,
            id,
            Kept {
                built_at: started,
                generation,
                state: built.state.as_str().to_owned(),
                json: built.json.clone(),
                batches_at: built.batches_at,
                parts: built.parts,
                refreshing: false,
            },
        );
    } else {
        kept.remove(id);
    }
    built.json
}

fn encode_failed(id: &str, err: &AssembleError) -> ApiError {
    tracing::error!(release = id, error = %err, "a release view could not be encoded");
    ApiError::internal()
}

/// The view of a release that has just started running, from `pending_json`, its
/// view built while it was pending, whose batches start at byte `batches_at`:
/// its own fields as they are now, then the same batches (its tasks did not move
/// while it was pending); with where the batches start in it. `None` if the
/// release is not running, or a part is not of a pending task (the pending view
/// is then not what the release started with).
fn started_view(
    release: ReleaseRecord,
    rolled_back_by: Option<String>,
    pending_json: &[u8],
    batches_at: usize,
    parts: &Parts,
) -> Option<Result<(Vec<u8>, usize), AssembleError>> {
    if release.state != ReleaseState::Running
        || !parts
            .values()
            .all(|part| part.settled && part.task.state == TaskState::Pending)
    {
        return None;
    }
    let mut header = views::release(release, &[], None);
    header.counts = wharf_api::InstanceCounts {
        total: parts.len() as u32,
        pending: parts.len() as u32,
        ..Default::default()
    };
    header.rolled_back_by = rolled_back_by;
    Some((|| {
        let header = serde_json::to_vec(&header)?;
        let header = without_empty_list(&header)?;
        let batches = pending_json
            .get(batches_at..)
            .ok_or(AssembleError::ListNotLast)?;
        let mut json = Vec::with_capacity(header.len() + batches.len());
        json.extend_from_slice(header);
        json.extend_from_slice(batches);
        Ok((json, header.len()))
    })())
}

/// Picks the tasks whose steps a build must read: those of the instances without
/// a fitting part in `previous`.
fn steps_wanted(previous: Option<Arc<Parts>>) -> StepFilter {
    Box::new(move |task| fitting(previous.as_deref(), task).is_none())
}

/// The JSON of a release's view (what `serde_json` makes of
/// [`actions::release_view`]'s answer) from `detail`, whose steps are those of
/// the instances `previous` has no fitting part for; with the parts of this
/// build and how many instances were encoded anew.
fn assemble(
    detail: ReleaseDetail,
    rolled_back_by: Option<String>,
    previous: Option<&Parts>,
) -> Result<Assembled, AssembleError> {
    let ReleaseDetail {
        release,
        tasks,
        steps,
    } = detail;
    let batch_count = release.batch_count;
    // The view without its batches, then each batch without its instances: the
    // lists are the last fields of both, so the JSON ends in `[]}` where they go.
    let mut header = views::release(release, &tasks, None);
    header.rolled_back_by = rolled_back_by;
    let header = serde_json::to_vec(&header)?;
    let mut steps_of: HashMap<&str, Vec<&StepRecord>> = HashMap::new();
    for step in &steps {
        steps_of.entry(&step.instance_id).or_default().push(step);
    }
    let mut parts = Parts::with_capacity(tasks.len());
    let mut encoded = 0;
    let mut out = Vec::with_capacity(
        header.len() + previous.map_or(0, |p| p.values().map(|part| part.json.len() + 1).sum()),
    );
    out.extend_from_slice(without_empty_list(&header)?);
    let batches_at = out.len();
    out.push(b'[');
    for batch in 0..batch_count {
        let members: Vec<&TaskRecord> = tasks.iter().filter(|t| t.batch == batch).collect();
        let batch_header = serde_json::to_vec(&wharf_api::ReleaseBatch {
            number: batch + 1,
            state: views::batch_state(&members).to_owned(),
            instances: Vec::new(),
        })?;
        if batch > 0 {
            out.push(b',');
        }
        out.extend_from_slice(without_empty_list(&batch_header)?);
        out.push(b'[');
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
    }
    out.extend_from_slice(b"]}");
    Ok(Assembled {
        json: out,
        batches_at,
        parts,
        encoded,
    })
}

/// A view as [`assemble`] made it.
struct Assembled {
    json: Vec<u8>,
    /// Where the list of batches starts in `json`.
    batches_at: usize,
    parts: Parts,
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone as _, Utc};
    use wharf_domain::release::{PauseMode, StepName};
    use wharf_store::ReleaseRecord;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn release(state: ReleaseState) -> ReleaseRecord {
        ReleaseRecord {
            id: "r-1".into(),
            app: "shop".into(),
            group: "prod".into(),
            deployment: "v2".into(),
            state,
            pause: PauseMode::Auto,
            batch_count: 2,
            batch_interval_secs: 0,
            max_failures: 0,
            rollback_on_failure: true,
            kind: "release".into(),
            rollback_of: None,
            continued_through: 0,
            created_at: at(0),
            started_at: Some(at(1)),
            finished_at: None,
            message: None,
        }
    }

    fn task(n: u32, batch: u32, state: TaskState) -> TaskRecord {
        TaskRecord {
            release_id: "r-1".into(),
            instance_id: format!("i-{n:016x}"),
            instance_name: format!("web-\"{n}\""),
            batch,
            state,
            dispatched_at: (state != TaskState::Pending).then(|| at(2)),
            started_at: None,
            finished_at: None,
            deadline: None,
            image_digest: None,
            message: None,
        }
    }

    fn step(task: &TaskRecord, step: StepName, state: StepState) -> StepRecord {
        StepRecord {
            release_id: "r-1".into(),
            instance_id: task.instance_id.clone(),
            step,
            state,
            started_at: at(3),
            finished_at: (state != StepState::Running).then(|| at(4)),
            exit_code: (state != StepState::Running).then_some(0),
            output: String::new(),
            dropped_bytes: 7,
            message: None,
        }
    }

    /// The whole release as a read of everything encodes it.
    fn whole(release: &ReleaseRecord, tasks: &[TaskRecord], steps: &[StepRecord]) -> Vec<u8> {
        let mut view = views::release(release.clone(), tasks, Some(steps));
        view.rolled_back_by = Some("r-2".into());
        serde_json::to_vec(&view).unwrap()
    }

    /// What the store answers to a build that has `previous`: the steps of the
    /// tasks the build's filter picks.
    fn detail_for(
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
        steps: &[StepRecord],
        previous: Option<&Parts>,
    ) -> ReleaseDetail {
        let wanted = steps_wanted(previous.map(|p| Arc::new(p.clone())));
        let task_of = |s: &StepRecord| {
            tasks
                .iter()
                .find(|t| t.instance_id == s.instance_id)
                .unwrap()
        };
        ReleaseDetail {
            release: release.clone(),
            tasks: tasks.to_vec(),
            steps: steps
                .iter()
                .filter(|s| wanted(task_of(s)))
                .cloned()
                .collect(),
        }
    }

    #[test]
    fn a_first_build_is_the_whole_view() {
        let r = release(ReleaseState::Running);
        let tasks = vec![
            task(1, 0, TaskState::Running),
            task(2, 0, TaskState::Succeeded),
            task(3, 1, TaskState::Pending),
        ];
        let steps = vec![
            step(&tasks[0], StepName::Fetch, StepState::Succeeded),
            step(&tasks[0], StepName::Stop, StepState::Running),
            step(&tasks[1], StepName::Fetch, StepState::Succeeded),
        ];
        let Assembled {
            json,
            parts,
            encoded,
            ..
        } = assemble(
            detail_for(&r, &tasks, &steps, None),
            Some("r-2".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            String::from_utf8(whole(&r, &tasks, &steps)).unwrap()
        );
        assert_eq!((parts.len(), encoded), (3, 3));
    }

    #[test]
    fn a_later_build_reencodes_only_what_may_have_changed_and_is_the_whole_view() {
        let r = release(ReleaseState::Running);
        let before = vec![
            task(1, 0, TaskState::Running),   // goes on running: encoded again
            task(2, 0, TaskState::Succeeded), // unchanged and ended: reused
            task(3, 0, TaskState::Failed),    // ended with a step running: encoded again
            task(4, 1, TaskState::Pending),   // unchanged and pending: reused
            task(5, 1, TaskState::Pending),   // dispatched since: encoded again
        ];
        let steps_before = vec![
            step(&before[0], StepName::Fetch, StepState::Running),
            step(&before[1], StepName::Fetch, StepState::Succeeded),
            step(&before[1], StepName::Start, StepState::Succeeded),
            step(&before[2], StepName::Stop, StepState::Running),
        ];
        let Assembled { parts, .. } = assemble(
            detail_for(&r, &before, &steps_before, None),
            Some("r-2".into()),
            None,
        )
        .unwrap();

        let mut after = before.clone();
        after[4].state = TaskState::Dispatched;
        after[4].dispatched_at = Some(at(9));
        let mut steps_after = steps_before.clone();
        steps_after[0].state = StepState::Succeeded;
        steps_after[0].finished_at = Some(at(8));
        steps_after[3].dropped_bytes = 99;
        steps_after.push(step(&after[0], StepName::Start, StepState::Running));
        let r = release(ReleaseState::Running);
        let Assembled {
            json,
            parts,
            encoded,
            ..
        } = assemble(
            detail_for(&r, &after, &steps_after, Some(&parts)),
            Some("r-2".into()),
            Some(&parts),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            String::from_utf8(whole(&r, &after, &steps_after)).unwrap()
        );
        assert_eq!((parts.len(), encoded), (5, 3));
    }

    #[test]
    fn a_kept_view_is_replaced_only_by_a_later_build() {
        let kept_of = |generation: u64, json: &'static str| Kept {
            built_at: Instant::now(),
            generation,
            state: "running".into(),
            json: Bytes::from_static(json.as_bytes()),
            batches_at: 0,
            parts: Arc::default(),
            refreshing: false,
        };
        let mut kept = HashMap::new();
        keep(&mut kept, "r-1", kept_of(5, "five"));
        keep(&mut kept, "r-1", kept_of(3, "three"));
        assert_eq!(kept["r-1"].json, "five");
        keep(&mut kept, "r-1", kept_of(8, "eight"));
        assert_eq!(kept["r-1"].json, "eight");
    }

    #[test]
    fn a_release_that_just_started_is_its_pending_view_with_the_new_state() {
        let mut pending = release(ReleaseState::Pending);
        pending.started_at = None;
        let tasks = vec![
            task(1, 0, TaskState::Pending),
            task(2, 0, TaskState::Pending),
            task(3, 1, TaskState::Pending),
        ];
        let built = assemble(
            detail_for(&pending, &tasks, &[], None),
            Some("r-2".into()),
            None,
        )
        .unwrap();
        let running = release(ReleaseState::Running);
        let (json, batches_at) = started_view(
            running.clone(),
            Some("r-2".into()),
            &built.json,
            built.batches_at,
            &built.parts,
        )
        .expect("the started view")
        .unwrap();
        let whole_running = whole(&running, &tasks, &[]);
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            String::from_utf8(whole_running.clone()).unwrap()
        );
        assert!(json[batches_at..].starts_with(b"[{\"number\":1,"));
        // A restart of the same view from the started one is the same again.
        let (again, _) = started_view(
            running.clone(),
            Some("r-2".into()),
            &json,
            batches_at,
            &built.parts,
        )
        .expect("the started view")
        .unwrap();
        assert_eq!(again, whole_running);

        // Not for a release that is not running, nor from parts of tasks that
        // moved.
        let not_running = started_view(
            release(ReleaseState::Cancelled),
            None,
            &built.json,
            built.batches_at,
            &built.parts,
        );
        assert!(not_running.is_none());
        let mut moved = tasks.clone();
        moved[1] = task(2, 0, TaskState::Dispatched);
        let moved = assemble(
            detail_for(&running, &moved, &[], None),
            Some("r-2".into()),
            None,
        )
        .unwrap();
        assert!(started_view(running, None, &moved.json, moved.batches_at, &moved.parts).is_none());
    }

    #[test]
    fn a_release_of_no_batches_is_the_whole_view() {
        let mut r = release(ReleaseState::Cancelled);
        r.batch_count = 0;
        let built = assemble(detail_for(&r, &[], &[], None), Some("r-2".into()), None).unwrap();
        assert_eq!(built.json, whole(&r, &[], &[]));
        assert!(built.parts.is_empty());
    }
}
