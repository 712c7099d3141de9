//! Tests of the kept views of large releases: what a build reuses and what it
//! reads again.

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

/// How each batch of `tasks` stands, as the store counts it.
fn summaries(tasks: &[TaskRecord]) -> Vec<BatchSummary> {
    let mut batches: Vec<BatchSummary> = Vec::new();
    for task in tasks {
        if !batches.iter().any(|b| b.batch == task.batch) {
            batches.push(BatchSummary {
                batch: task.batch,
                ..Default::default()
            });
        }
        let b = batches.iter_mut().find(|b| b.batch == task.batch).unwrap();
        match task.state {
            TaskState::Pending => b.pending += 1,
            TaskState::Dispatched => b.dispatched += 1,
            TaskState::Running => b.running += 1,
            TaskState::Succeeded => b.succeeded += 1,
            TaskState::Failed => b.failed += 1,
            TaskState::Cancelled => b.cancelled += 1,
        }
        b.last_finished_at = b.last_finished_at.max(task.finished_at);
    }
    batches.sort_by_key(|b| b.batch);
    batches
}

/// What the store answers to a build that has `previous`: the tasks of the
/// batches and the steps of the tasks that the build's filters pick.
fn detail_for(
    release: &ReleaseRecord,
    tasks: &[TaskRecord],
    steps: &[StepRecord],
    previous: Option<&BuiltView>,
) -> ReleasePart {
    let previous = previous.map(|p| {
        Arc::new(BuiltView {
            json: p.json.clone(),
            batches: p
                .batches
                .iter()
                .map(|b| BuiltBatch {
                    summary: b.summary.clone(),
                    range: b.range.clone(),
                    parts: b.parts.clone(),
                    settled: b.settled,
                })
                .collect(),
        })
    });
    let batches = summaries(tasks);
    let batch_wanted = batches_wanted(previous.clone());
    let picked: Vec<u32> = batches
        .iter()
        .filter(|b| batch_wanted(b))
        .map(|b| b.batch)
        .collect();
    let tasks: Vec<TaskRecord> = tasks
        .iter()
        .filter(|t| picked.contains(&t.batch))
        .cloned()
        .collect();
    let step_wanted = steps_wanted(previous);
    let steps = steps
        .iter()
        .filter(|s| {
            tasks
                .iter()
                .find(|t| t.instance_id == s.instance_id)
                .is_some_and(&step_wanted)
        })
        .cloned()
        .collect();
    ReleasePart {
        release: release.clone(),
        batches,
        tasks,
        steps,
    }
}

/// A build of `tasks` and `steps` after `previous`: the store's answer to its
/// filters, assembled.
fn build_of(
    release: &ReleaseRecord,
    tasks: &[TaskRecord],
    steps: &[StepRecord],
    previous: Option<&BuiltView>,
) -> Assembled {
    assemble(
        detail_for(release, tasks, steps, previous),
        Some("r-2".into()),
        previous,
    )
    .unwrap()
}

/// The batches (0-based) of the tasks a build read, one entry per task.
fn batches_read(part: &ReleasePart) -> Vec<u32> {
    part.tasks.iter().map(|t| t.batch).collect()
}

fn text(json: &[u8]) -> String {
    String::from_utf8(json.to_vec()).unwrap()
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
    let Assembled { view, encoded } = build_of(&r, &tasks, &steps, None);
    assert_eq!(text(&view.json), text(&whole(&r, &tasks, &steps)));
    assert_eq!((view.instances(), encoded), (3, 3));
    // Each batch's range is its object in the view.
    let first = &view.json[view.batches[0].range.clone()];
    assert!(first.starts_with(b"{\"number\":1,") && first.ends_with(b"]}"));
    assert!(view.json[view.batches[1].range.clone()].starts_with(b"{\"number\":2,"));
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
    let first = build_of(&r, &before, &steps_before, None);

    let mut after = before.clone();
    after[4].state = TaskState::Dispatched;
    after[4].dispatched_at = Some(at(9));
    let mut steps_after = steps_before.clone();
    steps_after[0].state = StepState::Succeeded;
    steps_after[0].finished_at = Some(at(8));
    steps_after[3].dropped_bytes = 99;
    steps_after.push(step(&after[0], StepName::Start, StepState::Running));
    // Both batches moved (or may have): both are read.
    let part = detail_for(&r, &after, &steps_after, Some(&first.view));
    assert_eq!(part.tasks.len(), 5);
    let Assembled { view, encoded } = build_of(&r, &after, &steps_after, Some(&first.view));
    assert_eq!(text(&view.json), text(&whole(&r, &after, &steps_after)));
    assert_eq!((view.instances(), encoded), (5, 3));
}

#[test]
fn a_batch_that_did_not_move_is_copied_without_reading_its_tasks() {
    let mut r = release(ReleaseState::Running);
    r.batch_count = 3;
    let mut ended = task(1, 0, TaskState::Succeeded);
    ended.finished_at = Some(at(5));
    let before = vec![
        ended.clone(),                  // batch 1: over
        task(2, 0, TaskState::Failed),  // batch 1: over
        task(3, 1, TaskState::Running), // batch 2: under way
        task(4, 1, TaskState::Running), // batch 2: under way, stays as it is
        task(5, 2, TaskState::Pending), // batch 3: not started
    ];
    let steps_before = vec![
        step(&before[0], StepName::Start, StepState::Succeeded),
        step(&before[1], StepName::Start, StepState::Failed),
        step(&before[2], StepName::Start, StepState::Running),
        step(&before[3], StepName::Start, StepState::Running),
    ];
    let first = build_of(&r, &before, &steps_before, None);

    // Instance 3 ends; batches 1 and 3 stand as they did.
    let mut after = before.clone();
    after[2].state = TaskState::Succeeded;
    after[2].finished_at = Some(at(9));
    let mut steps_after = steps_before.clone();
    steps_after[2].state = StepState::Succeeded;
    steps_after[2].finished_at = Some(at(9));
    assert_eq!(
        batches_read(&detail_for(&r, &after, &steps_after, Some(&first.view))),
        [1, 1],
        "only the batch that moved is read"
    );
    let second = build_of(&r, &after, &steps_after, Some(&first.view));
    assert_eq!(
        text(&second.view.json),
        text(&whole(&r, &after, &steps_after))
    );
    // Instance 4 still runs, so its step is read and encoded again.
    assert_eq!(second.encoded, 2);

    // A batch whose counts stand as they did but that has a task under way is
    // read again: its steps may have moved.
    let mut steps_later = steps_after.clone();
    steps_later[3].state = StepState::Succeeded;
    steps_later[3].finished_at = Some(at(10));
    steps_later.push(step(&after[3], StepName::Verify, StepState::Running));
    assert_eq!(
        batches_read(&detail_for(&r, &after, &steps_later, Some(&second.view))),
        [1, 1]
    );
    let third = build_of(&r, &after, &steps_later, Some(&second.view));
    assert_eq!(
        text(&third.view.json),
        text(&whole(&r, &after, &steps_later))
    );

    // The release ends once batch 3 was cancelled: it and batch 2 are read;
    // batch 1 is still copied.
    let mut last = after.clone();
    last[3].state = TaskState::Succeeded;
    last[3].finished_at = Some(at(11));
    last[4].state = TaskState::Cancelled;
    last[4].finished_at = Some(at(11));
    let mut r_end = r.clone();
    r_end.state = ReleaseState::Cancelled;
    let mut steps_last = steps_later.clone();
    steps_last[4].state = StepState::Succeeded;
    steps_last[4].finished_at = Some(at(11));
    assert_eq!(
        batches_read(&detail_for(&r_end, &last, &steps_last, Some(&third.view))),
        [1, 1, 2]
    );
    let fourth = build_of(&r_end, &last, &steps_last, Some(&third.view));
    assert_eq!(
        text(&fourth.view.json),
        text(&whole(&r_end, &last, &steps_last))
    );
}

#[test]
fn a_batch_of_ended_tasks_with_a_step_still_running_is_read_again() {
    // The driver ends a task and closes its running step in two writes: in
    // between, a batch's counts no longer move but a step of it still does.
    let mut r = release(ReleaseState::Running);
    r.batch_count = 3;
    let mut failed = task(1, 0, TaskState::Failed);
    failed.finished_at = Some(at(5));
    let tasks = vec![failed, task(2, 2, TaskState::Pending)];
    let steps_before = vec![step(&tasks[0], StepName::Stop, StepState::Running)];
    let first = build_of(&r, &tasks, &steps_before, None);
    let mut steps_after = steps_before.clone();
    steps_after[0].state = StepState::Failed;
    steps_after[0].finished_at = Some(at(6));
    assert_eq!(
        batches_read(&detail_for(&r, &tasks, &steps_after, Some(&first.view))),
        [0],
        "batch 1 is read, batch 3 copied"
    );
    let second = build_of(&r, &tasks, &steps_after, Some(&first.view));
    assert_eq!(
        text(&second.view.json),
        text(&whole(&r, &tasks, &steps_after))
    );
    // Batch 2 has no task: it is a batch with no instances in every build.
    let empty = &second.view.json[second.view.batches[1].range.clone()];
    assert!(empty.starts_with(b"{\"number\":2,") && empty.ends_with(b"\"instances\":[]}"));
}

#[test]
fn a_kept_view_is_replaced_only_by_a_later_build() {
    let kept_of = |generation: u64, json: &'static str| Kept {
        built_at: Instant::now(),
        generation,
        state: "running".into(),
        view: Arc::new(BuiltView {
            json: Bytes::from_static(json.as_bytes()),
            batches: Vec::new(),
        }),
        refreshing: false,
    };
    let mut kept = HashMap::new();
    keep(&mut kept, "r-1", kept_of(5, "five"));
    keep(&mut kept, "r-1", kept_of(3, "three"));
    assert_eq!(kept["r-1"].view.json, "five");
    keep(&mut kept, "r-1", kept_of(8, "eight"));
    assert_eq!(kept["r-1"].view.json, "eight");
}

#[test]
fn a_release_that_changes_state_but_not_its_instances_reads_no_task() {
    let mut pending = release(ReleaseState::Pending);
    pending.started_at = None;
    let tasks = vec![
        task(1, 0, TaskState::Pending),
        task(2, 0, TaskState::Pending),
        task(3, 1, TaskState::Pending),
    ];
    let built = build_of(&pending, &tasks, &[], None);
    let running = release(ReleaseState::Running);
    assert!(detail_for(&running, &tasks, &[], Some(&built.view))
        .tasks
        .is_empty());
    let started = build_of(&running, &tasks, &[], Some(&built.view));
    assert_eq!(
        text(&started.view.json),
        text(&whole(&running, &tasks, &[]))
    );
    assert_eq!(started.encoded, 0);

    // Once a task moved, its batch is read and the view shows it.
    let mut moved = tasks.clone();
    moved[1] = task(2, 0, TaskState::Dispatched);
    let part = detail_for(&running, &moved, &[], Some(&started.view));
    assert_eq!(part.tasks.len(), 2);
    let later = build_of(&running, &moved, &[], Some(&started.view));
    assert_eq!(text(&later.view.json), text(&whole(&running, &moved, &[])));
}

#[test]
fn a_release_of_no_batches_is_the_whole_view() {
    let mut r = release(ReleaseState::Cancelled);
    r.batch_count = 0;
    let built = build_of(&r, &[], &[], None);
    assert_eq!(built.view.json, whole(&r, &[], &[]));
    assert_eq!(built.view.instances(), 0);
}
