//! The memory of built release views (`release_views.rs`): the kept JSON of
//! large releases and the parts of it a later build may reuse. Only data and the
//! rules of keeping it; building and serving views is `release_views.rs`, which
//! this module does not know, so that the server's state can hold the cache
//! without the state and the views using each other.

use axum::body::Bytes;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wharf_store::{BatchSummary, TaskRecord};

/// More large releases than are ever read at once; past it the cache starts over.
/// A kept release of 10,000 instances holds about 20 MB (its JSON and its parts).
pub(crate) const MAX_KEPT: usize = 16;

pub(crate) struct Kept {
    /// When the build that made it started, before it read the store.
    pub(crate) built_at: Instant,
    /// Which build made it: builds are numbered as they start, so a higher number
    /// read the store later.
    pub(crate) generation: u64,
    /// The release's state when the view was built.
    pub(crate) state: String,
    pub(crate) view: Arc<BuiltView>,
    /// Whether a background build is under way.
    pub(crate) refreshing: bool,
}

/// A built view: its JSON, and what the next build of the release may reuse.
pub(crate) struct BuiltView {
    pub(crate) json: Bytes,
    /// The release's batches, in order.
    pub(crate) batches: Vec<BuiltBatch>,
}

/// One batch of a built view.
pub(crate) struct BuiltBatch {
    /// How the batch stood when its tasks were read; `None` if it has none.
    pub(crate) summary: Option<BatchSummary>,
    /// Where the batch's JSON object is in the view's JSON.
    pub(crate) range: Range<usize>,
    /// Its instances' parts.
    pub(crate) parts: Arc<Parts>,
    /// Whether every part is settled (see [`InstancePart::settled`]).
    pub(crate) settled: bool,
}

impl BuiltBatch {
    /// Whether the batch's JSON is still that of the batch, which stands as
    /// `now`: its tasks stand as they did when it was built, and each of them
    /// was pending or had ended with no step running. Such a task moves only by
    /// changing state (every statement that changes a pending or ended task
    /// sets its state), which changes its batch's counts; an ended task's steps
    /// no longer change, nor do a pending task's (it has none running).
    pub(crate) fn still_fits(&self, now: &BatchSummary) -> bool {
        self.settled && self.summary.as_ref() == Some(now)
    }
}

impl BuiltView {
    pub(crate) fn instances(&self) -> usize {
        self.batches.iter().map(|b| b.parts.len()).sum()
    }

    /// Whether the build must read the tasks of the batch that stands as `now`.
    pub(crate) fn must_read(&self, now: &BatchSummary) -> bool {
        !self
            .batches
            .get(now.batch as usize)
            .is_some_and(|b| b.still_fits(now))
    }
}

/// The instances' parts of a built batch, by instance id.
pub(crate) type Parts = HashMap<String, Arc<InstancePart>>;

/// One instance's part of a built view: its JSON, and what it was built from.
pub(crate) struct InstancePart {
    pub(crate) task: TaskRecord,
    pub(crate) json: Box<[u8]>,
    /// Whether the instance's steps cannot change while its task stays as it is:
    /// the task is pending (a step begins only on a running task, which changes
    /// the task), or ended with no step running (only a running step changes).
    pub(crate) settled: bool,
}

/// The part of `previous` that is still the view of `task`'s instance: one made
/// from this very task, and settled.
pub(crate) fn fitting<'a>(
    previous: Option<&'a BuiltView>,
    task: &TaskRecord,
) -> Option<&'a Arc<InstancePart>> {
    previous?
        .batches
        .get(task.batch as usize)?
        .parts
        .get(&task.instance_id)
        .filter(|part| part.settled && part.task == *task)
}

/// The kept views, by release id.
#[derive(Clone, Default)]
pub struct ReleaseViews {
    pub(crate) kept: Arc<Mutex<HashMap<String, Kept>>>,
    /// Held while a view of a large release is built: reads that need a new view
    /// wait for the build under way and then use it, instead of each building one.
    pub(crate) building: Arc<tokio::sync::Mutex<()>>,
    /// Builds started so far: the next build's generation.
    pub(crate) builds: Arc<AtomicU64>,
}

impl ReleaseViews {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `new` as the view of release `id`, unless a build that read the store
/// later was kept already: builds may overlap (a read that finds nothing kept
/// builds without waiting), and the slower, older one must not replace the
/// newer one.
pub(crate) fn keep(kept: &mut HashMap<String, Kept>, id: &str, new: Kept) {
    if kept.get(id).is_some_and(|k| k.generation > new.generation) {
        return;
    }
    if kept.len() >= MAX_KEPT && !kept.contains_key(id) {
        kept.clear();
    }
    kept.insert(id.to_owned(), new);
}
