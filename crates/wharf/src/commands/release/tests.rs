//! Unit tests of the release commands' rendering and following.

use super::*;
use wharf_api::InstanceCounts;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn step(name: &str, state: &str, start: i64, end: Option<i64>, exit: Option<i32>) -> ReleaseStep {
    ReleaseStep {
        name: name.into(),
        state: state.into(),
        started_at: at(start),
        finished_at: end.map(at),
        exit_code: exit,
        dropped_bytes: 0,
        message: None,
    }
}

fn instance(name: &str, state: &str, steps: Vec<ReleaseStep>) -> ReleaseInstance {
    ReleaseInstance {
        id: format!("i-{name}"),
        name: name.into(),
        state: state.into(),
        dispatched_at: steps.first().map(|s| s.started_at),
        started_at: steps.first().map(|s| s.started_at),
        finished_at: if matches!(state, "succeeded" | "failed") {
            steps.last().and_then(|s| s.finished_at)
        } else {
            None
        },
        image_digest: None,
        message: (state == "failed").then(|| "start exited with 3".to_owned()),
        steps,
    }
}

fn release(state: &str, batches: Vec<ReleaseBatch>) -> Release {
    Release {
        id: "r-1".into(),
        app: "web".into(),
        group: "prod".into(),
        deployment: "v1".into(),
        state: state.into(),
        kind: "release".into(),
        pause: "first".into(),
        batch_count: batches.len() as u32,
        batch_interval_secs: 0,
        max_failures: 0,
        rollback_on_failure: false,
        rollback_of: None,
        rolled_back_by: None,
        message: None,
        created_at: at(0),
        started_at: Some(at(0)),
        finished_at: None,
        counts: InstanceCounts::default(),
        batches,
    }
}

fn batch(number: u32, state: &str, instances: Vec<ReleaseInstance>) -> ReleaseBatch {
    ReleaseBatch {
        number,
        state: state.into(),
        instances,
    }
}

#[test]
fn plain_lines_say_what_changed() {
    let mut lines = Lines::default();
    let pending = release(
        "running",
        vec![
            batch(1, "running", vec![instance("web-1", "running", vec![])]),
            batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
        ],
    );
    let text = lines.update(&pending, at(1));
    assert!(
        text.contains("publishes v1 to web/prod: 0 instance(s) in 2 batch(es)"),
        "{text}"
    );
    assert!(text.contains("release r-1 running\n"), "{text}");
    assert!(text.contains("batch 1/2 running on web-1\n"), "{text}");
    assert!(!text.contains("batch 2/2"), "{text}");

    let starting = release(
        "running",
        vec![
            batch(
                1,
                "running",
                vec![instance(
                    "web-1",
                    "running",
                    vec![
                        step("fetch", "succeeded", 1, Some(1), None),
                        step("start", "running", 1, None, None),
                    ],
                )],
            ),
            batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
        ],
    );
    let text = lines.update(&starting, at(2));
    assert_eq!(
        text,
        "batch 1/2 web-1: fetch succeeded in 0.0s\nbatch 1/2 web-1: start running\n"
    );
    // Nothing changed, nothing printed.
    assert_eq!(lines.update(&starting, at(3)), "");

    let paused = release(
        "paused",
        vec![
            batch(
                1,
                "succeeded",
                vec![instance(
                    "web-1",
                    "succeeded",
                    vec![
                        step("fetch", "succeeded", 1, Some(1), None),
                        step("start", "succeeded", 1, Some(4), Some(0)),
                    ],
                )],
            ),
            batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
        ],
    );
    let text = lines.update(&paused, at(5));
    assert_eq!(
        text,
        "batch 1/2 web-1: start succeeded (exit 0) in 3.0s\n\
         web-1 succeeded in 3.0s\n\
         batch 1/2 succeeded\n\
         release r-1 paused after batch 1/2: run 'wharf release continue r-1' to go on \
         (or 'wharf release cancel r-1')\n"
    );
}

#[test]
fn failures_name_the_step_and_message() {
    let mut lines = Lines::default();
    let mut failed = release(
        "failed",
        vec![batch(
            1,
            "failed",
            vec![instance(
                "web-\u{1b}1",
                "failed",
                vec![step("start", "failed", 0, Some(2), Some(3))],
            )],
        )],
    );
    failed.finished_at = Some(at(2));
    failed.message = Some("1 instance(s) failed".into());
    let text = lines.update(&failed, at(3));
    assert!(
        text.contains("batch 1/1 web-\\u{1b}1: start failed (exit 3) in 2.0s\n"),
        "{text}"
    );
    assert!(
        text.contains("web-\\u{1b}1 failed in 2.0s: start exited with 3\n"),
        "{text}"
    );
    assert!(
        text.ends_with("release r-1 failed in 2.0s: 1 instance(s) failed\n"),
        "{text}"
    );
}

#[test]
fn show_renders_batches_instances_and_steps() {
    let r = release(
        "succeeded",
        vec![batch(
            1,
            "succeeded",
            vec![instance(
                "web-1",
                "succeeded",
                vec![
                    step("fetch", "succeeded", 0, Some(0), None),
                    step("start", "succeeded", 0, Some(65), Some(0)),
                ],
            )],
        )],
    );
    let text = render_release(&r, at(100));
    assert!(text.contains("Batch 1/1: succeeded\n"), "{text}");
    assert!(
        text.contains("  web-1 (i-web-1): succeeded in 1m05s\n"),
        "{text}"
    );
    assert!(
        text.contains("    STEP   STATE      EXIT  DURATION  MESSAGE\n"),
        "{text}"
    );
    assert!(
        text.contains("    start  succeeded  0     1m05s     -\n"),
        "{text}"
    );
}

#[test]
fn durations_read_well() {
    assert_eq!(human_millis(3_249), "3.2s");
    assert_eq!(human_millis(125_000), "2m05s");
    assert_eq!(human_millis(3_720_000), "1h02m");
}

fn log(step: &str, state: &str, output: &str, dropped: u64) -> StepLog {
    StepLog {
        instance_id: "i-1".into(),
        instance_name: "web-1".into(),
        step: step.into(),
        state: state.into(),
        exit_code: (state != "running").then_some(0),
        output: output.into(),
        dropped_bytes: dropped,
        message: None,
    }
}

#[test]
fn logs_print_headers_and_only_new_output() {
    let mut printer = LogPrinter::new(false);
    assert_eq!(
        printer.update(&[log("start", "running", "one\n", 0)]),
        "== web-1 start (running)\none\n"
    );
    assert_eq!(printer.update(&[log("start", "running", "one\n", 0)]), "");
    assert_eq!(
        printer.update(&[log("start", "running", "one\ntwo\n", 0)]),
        "two\n"
    );
    // The server dropped "one\n" and kept a tail that moved forward.
    assert_eq!(
        printer.update(&[log("start", "running", "two\nthree", 4)]),
        "three"
    );
    // The tail moved past what was printed: the gap is said, then the tail.
    assert_eq!(
        printer.update(&[log("start", "running", "five\n", 20)]),
        "\n== (7 bytes of output dropped)\nfive\n"
    );
    assert_eq!(
        printer.update(&[
            log("start", "succeeded", "five\nsix\n", 20),
            log("verify", "running", "", 0)
        ]),
        "six\n== web-1 start (exit 0)\n== web-1 verify (running)\n"
    );
}

#[test]
fn interleaved_output_names_its_step_again() {
    let mut printer = LogPrinter::new(false);
    let mut other = log("start", "running", "a1\n", 0);
    other.instance_id = "i-2".into();
    other.instance_name = "web-2".into();
    printer.update(&[log("start", "running", "b1\n", 0), other.clone()]);
    other.output.push_str("a2\n");
    assert_eq!(
        printer.update(&[log("start", "succeeded", "b1\nb2\n", 0), other]),
        "== web-1 start\nb2\n== web-1 start (exit 0)\n== web-2 start (running)\na2\n"
    );
}

#[test]
fn logs_of_ended_steps_print_once_with_their_result() {
    let mut printer = LogPrinter::new(true);
    let mut fetch = log("fetch", "succeeded", "", 0);
    fetch.exit_code = None;
    let mut failed = log("start", "failed", "boom\n\u{1b}[2J", 10);
    failed.exit_code = Some(3);
    assert_eq!(
        printer.update(&[fetch, failed.clone()]),
        "== web-1 fetch (succeeded)\n\
         == web-1 start (exit 3)\n\
         == (10 bytes of earlier output dropped)\n\
         boom\n\\u{1b}[2J"
    );
    assert_eq!(printer.update(&[failed]), "");
}

#[test]
fn log_chunks_carry_absolute_offsets() {
    let mut printer = LogPrinter::new(false);
    let chunks = printer.chunks(&[log("start", "running", "ab\n", 5)]);
    assert_eq!((chunks[0].offset, chunks[0].skipped_bytes), (5, 5));
    let chunks = printer.chunks(&[log("start", "succeeded", "ab\ncd\n", 5)]);
    assert_eq!(chunks[0].offset, 8);
    assert_eq!(chunks[0].output, "cd\n");
    assert!(printer
        .chunks(&[log("start", "succeeded", "ab\ncd\n", 5)])
        .is_empty());
}

#[test]
fn batch_interval_needs_auto() {
    let args = ReleaseCreateArgs {
        app: "web".into(),
        group: "prod".into(),
        deployment: "v1".into(),
        batches: 2,
        pause: PauseArg::First,
        batch_interval: Some(Duration::from_secs(30)),
        max_failures: None,
        rollback_on_failure: false,
        detach: false,
    };
    assert!(matches!(build_create(&args), Err(CommandError::Usage(_))));
    let body = build_create(&ReleaseCreateArgs {
        pause: PauseArg::Auto,
        ..args
    })
    .unwrap();
    assert_eq!(body.batch_interval_secs, Some(30));
    assert_eq!(body.pause.as_deref(), Some("auto"));
}
