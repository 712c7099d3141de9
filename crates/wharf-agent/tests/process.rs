//! Tests of the real `BashRunner` and `prepare_workdir` against real processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use wharf_agent::{
    error_chain, prepare_workdir, BashRunner, OutputSink, ProcessError, ProcessRunner, ScriptExit,
    ScriptOutcome, ScriptSpec, WorkdirError,
};

struct Fixture {
    _root: tempfile::TempDir,
    workdir: std::path::PathBuf,
    run_root: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().expect("temp dir");
    let workdir = root.path().join("work");
    let run_root = root.path().join("run");
    std::fs::create_dir(&workdir).expect("workdir");
    Fixture {
        workdir,
        run_root,
        _root: root,
    }
}

impl Fixture {
    fn runner(&self) -> BashRunner {
        BashRunner::new(&self.run_root).with_kill_grace(Duration::from_millis(500))
    }

    fn spec(&self, script: &str, timeout: Duration) -> ScriptSpec {
        ScriptSpec {
            script: script.to_owned(),
            workdir: self.workdir.clone(),
            env: BTreeMap::new(),
            timeout,
            user: None,
        }
    }

    async fn run(&self, script: &str, timeout: Duration) -> (ScriptOutcome, OutputSink) {
        let output = OutputSink::default();
        let outcome = self
            .runner()
            .run(&self.spec(script, timeout), &output)
            .await
            .expect("script runs");
        (outcome, output)
    }
}

const LONG: Duration = Duration::from_secs(30);

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// Waits briefly for a process to disappear (a killed process needs a moment to be reaped).
async fn gone_soon(pid: i32) -> bool {
    for _ in 0..40 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn pid_after(tail: &str, prefix: &str) -> i32 {
    tail.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} line in output: {tail}"))
}

#[tokio::test]
async fn exit_zero_keeps_stdout_and_stderr() {
    let f = fixture();
    let (outcome, output) = f
        .run("echo to-stdout\necho to-stderr >&2\necho again", LONG)
        .await;
    assert_eq!(outcome.exit, ScriptExit::Code(0));
    assert!(outcome.success() && !outcome.timed_out && !outcome.output_abandoned);
    let tail = output.summary().tail;
    for line in ["to-stdout\n", "to-stderr\n", "again\n"] {
        assert!(tail.contains(line), "missing {line:?} in {tail:?}");
    }
}

#[tokio::test]
async fn non_zero_exit_code_is_reported_with_output() {
    let f = fixture();
    let (outcome, output) = f.run("echo before failing\nexit 3\necho never", LONG).await;
    assert_eq!(outcome.exit, ScriptExit::Code(3));
    assert!(!outcome.success());
    assert_eq!(output.summary().tail, "before failing\n");
}

#[tokio::test]
async fn script_sees_the_given_environment_but_not_the_agents_other_variables() {
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo sets this for tests; it stands in for an agent secret"
    );
    let f = fixture();
    let names = [
        "WHARF_APP",
        "WHARF_GROUP",
        "WHARF_DEPLOYMENT",
        "WHARF_RELEASE",
        "WHARF_INSTANCE",
        "WHARF_STEP",
        "WHARF_IMAGE",
        "WHARF_IMAGE_DIGEST",
    ];
    let mut spec = f.spec(
        "for n in WHARF_APP WHARF_GROUP WHARF_DEPLOYMENT WHARF_RELEASE WHARF_INSTANCE WHARF_STEP WHARF_IMAGE WHARF_IMAGE_DIGEST; do echo \"$n=${!n}\"; done\n\
         echo \"secret=${CARGO_MANIFEST_DIR:-unset}\"\n\
         command -v cat >/dev/null && echo path-ok",
        LONG,
    );
    for name in names {
        spec.env
            .insert(name.to_owned(), format!("value of {name} with 'quotes' $x"));
    }
    let output = OutputSink::default();
    let outcome = f.runner().run(&spec, &output).await.expect("runs");
    assert!(outcome.success());
    let tail = output.summary().tail;
    for name in names {
        let line = format!("{name}=value of {name} with 'quotes' $x\n");
        assert!(tail.contains(&line), "missing {line:?} in {tail:?}");
    }
    assert!(tail.contains("secret=unset\n"), "{tail}");
    assert!(tail.contains("path-ok\n"), "{tail}");
}

#[tokio::test]
async fn cwd_is_the_workdir_and_stdin_is_dev_null() {
    let f = fixture();
    let (outcome, output) = f
        .run(
            "pwd -P\nreadlink /proc/self/fd/0\ncat\necho read-stdin-done",
            LONG,
        )
        .await;
    assert!(outcome.success());
    let expected = std::fs::canonicalize(&f.workdir).expect("canonical workdir");
    assert_eq!(
        output.summary().tail,
        format!("{}\n/dev/null\nread-stdin-done\n", expected.display())
    );
}

#[tokio::test]
async fn script_file_is_private_and_removed_afterwards() {
    let f = fixture();
    let (outcome, output) = f
        .run(
            "echo \"script=$0\"\nstat -c 'dir=%a' \"$(dirname \"$0\")\"\nstat -c 'file=%a' \"$0\"",
            LONG,
        )
        .await;
    assert!(outcome.success());
    let tail = output.summary().tail;
    assert!(
        tail.contains("dir=700\n") && tail.contains("file=600\n"),
        "{tail}"
    );
    let script = tail
        .lines()
        .find_map(|l| l.strip_prefix("script="))
        .expect("script path printed");
    let script = Path::new(script);
    assert!(script.starts_with(&f.run_root), "{}", script.display());
    assert!(!script.exists(), "script file still exists");
    assert!(
        !script.parent().expect("run dir").exists(),
        "run dir still exists"
    );
}

#[tokio::test]
async fn hanging_script_and_its_children_are_killed_at_the_timeout() {
    let f = fixture();
    let started = Instant::now();
    let (outcome, output) = f
        .run(
            "sleep 1000 &\necho \"child=$!\"\nsleep 1000",
            Duration::from_secs(1),
        )
        .await;
    let elapsed = started.elapsed();
    assert!(outcome.timed_out);
    assert!(!outcome.success());
    assert_eq!(outcome.exit, ScriptExit::Signal(15), "bash dies of SIGTERM");
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let child = pid_after(&output.summary().tail, "child=");
    assert!(gone_soon(child).await, "background child {child} survived");
}

#[tokio::test]
async fn script_ignoring_term_is_killed_after_the_grace_period() {
    let f = fixture();
    let started = Instant::now();
    let (outcome, _output) = f
        .run(
            "trap '' TERM\nsleep 1000 & wait",
            Duration::from_millis(500),
        )
        .await;
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit, ScriptExit::Signal(9));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn leftover_background_child_does_not_keep_the_step_running() {
    let f = fixture();
    // The default grace (5 s) shows that TERM alone ends this promptly.
    let runner = BashRunner::new(&f.run_root);
    let output = OutputSink::default();
    let started = Instant::now();
    let outcome = runner
        .run(
            &f.spec("sleep 1000 &\necho \"child=$!\"\nexit 0", LONG),
            &output,
        )
        .await
        .expect("runs");
    let elapsed = started.elapsed();
    assert!(outcome.success(), "{outcome:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let child = pid_after(&output.summary().tail, "child=");
    assert!(gone_soon(child).await, "leftover child {child} survived");
}

#[tokio::test]
async fn leftover_child_ignoring_term_is_killed() {
    let f = fixture();
    let started = Instant::now();
    let (outcome, output) = f
        .run(
            // The child signals readiness only once it ignores TERM.
            "(trap '' TERM; touch ready; sleep 1000) &\necho \"child=$!\"\n\
             until [ -e ready ]; do sleep 0.01; done\nexit 0",
            LONG,
        )
        .await;
    let elapsed = started.elapsed();
    assert!(outcome.success());
    assert!(!outcome.output_abandoned);
    // It took SIGKILL after the 500 ms grace, not the SIGTERM.
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let child = pid_after(&output.summary().tail, "child=");
    assert!(gone_soon(child).await, "leftover child {child} survived");
}

#[tokio::test]
async fn process_that_left_the_group_cannot_hang_the_step() {
    let f = fixture();
    let started = Instant::now();
    let (outcome, output) = f
        .run(
            // Wait until the child has really left (its session id is its own pid).
            "setsid sleep 30 &\necho \"escaped=$!\"\n\
             until [ \"$(cut -d' ' -f6 /proc/$!/stat)\" = \"$!\" ]; do sleep 0.01; done\nexit 0",
            LONG,
        )
        .await;
    let escaped = pid_after(&output.summary().tail, "escaped=");
    // Clean up the escaped process whatever the assertions say.
    if let Some(pid) = rustix::process::Pid::from_raw(escaped) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert!(outcome.success());
    assert!(outcome.output_abandoned);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn large_output_keeps_the_last_mebibyte_and_counts_the_rest() {
    let f = fixture();
    // 700000 lines of 6 digits and a newline: 4,900,000 bytes.
    let (outcome, output) = f.run("seq -w 1 700000", LONG).await;
    assert!(outcome.success());
    let summary = output.summary();
    let kept_lines = 1024 * 1024 / 7;
    assert_eq!(summary.total_bytes, 4_900_000);
    assert_eq!(summary.tail.len(), kept_lines * 7);
    assert_eq!(summary.dropped_bytes, 4_900_000 - (kept_lines as u64) * 7);
    assert!(summary.tail.ends_with("699999\n700000\n"));
    let first = 700_000 - kept_lines + 1;
    assert!(
        summary.tail.starts_with(&format!("{first:06}\n")),
        "{}",
        &summary.tail[..20]
    );
}

#[tokio::test]
async fn very_long_line_is_cut_and_counted() {
    let f = fixture();
    let (outcome, output) = f
        .run(
            "head -c 100000 /dev/zero | tr '\\0' y\necho\necho after",
            LONG,
        )
        .await;
    assert!(outcome.success());
    let summary = output.summary();
    let max = output.limits().max_line_bytes;
    assert_eq!(summary.tail, format!("{}\nafter\n", "y".repeat(max)));
    assert_eq!(summary.dropped_bytes, (100_000 - max) as u64);
}

#[tokio::test]
async fn output_streams_while_the_script_runs() {
    let f = fixture();
    let output = OutputSink::default();
    let consumer = {
        let output = output.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = Vec::new();
            while let Some(chunk) = output.next_chunk(64 * 1024).await {
                seen.push((started.elapsed(), chunk));
            }
            seen
        })
    };
    let outcome = f
        .runner()
        .run(&f.spec("echo first\nsleep 1\necho second", LONG), &output)
        .await
        .expect("runs");
    output.close();
    assert!(outcome.success());
    let seen = consumer.await.expect("consumer");
    let text: String = seen.iter().map(|(_, c)| c.text.as_str()).collect();
    assert_eq!(text, "first\nsecond\n");
    let (at, first) = &seen[0];
    assert_eq!(first.text, "first\n");
    assert!(
        *at < Duration::from_millis(800),
        "first line arrived at {at:?}"
    );
}

#[tokio::test]
async fn prepare_workdir_creates_parents_and_accepts_existing() {
    let root = tempfile::tempdir().expect("temp dir");
    let path = root.path().join("a/b/c");
    prepare_workdir(&path).await.expect("created");
    assert!(path.is_dir());
    prepare_workdir(&path).await.expect("existing is fine");
}

#[tokio::test]
async fn prepare_workdir_under_a_regular_file_fails_clearly() {
    let root = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("file");
    std::fs::write(&file, "x").expect("file");

    let below = file.join("sub");
    let err = prepare_workdir(&below).await.expect_err("cannot create");
    assert!(matches!(err, WorkdirError::Create { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(
        text.starts_with(&format!(
            "cannot create working directory {}",
            below.display()
        )),
        "{text}"
    );
    assert!(text.contains("Not a directory"), "{text}");

    let err = prepare_workdir(&file)
        .await
        .expect_err("a file is no workdir");
    assert_eq!(
        err.to_string(),
        format!(
            "working directory {} exists but is not a directory",
            file.display()
        )
    );
}

#[tokio::test]
async fn running_in_a_missing_workdir_fails_clearly() {
    let f = fixture();
    let mut spec = f.spec("echo hi", LONG);
    spec.workdir = f.workdir.join("missing");
    let err = f
        .runner()
        .run(&spec, &OutputSink::default())
        .await
        .expect_err("no workdir");
    assert!(matches!(err, ProcessError::Workdir { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("No such file or directory"),
        "{}",
        error_chain(&err)
    );
}

#[tokio::test]
async fn cancelled_run_kills_the_whole_group() {
    let f = fixture();
    let output = OutputSink::default();
    let spec = f.spec("sleep 1000 &\necho \"child=$!\"\nsleep 1000", LONG);
    let runner = f.runner();
    // Dropping the run future (as agent shutdown would) must not leave the script behind.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(500), runner.run(&spec, &output)).await;
    assert!(
        cancelled.is_err(),
        "the script should still have been running"
    );
    let child = pid_after(&output.summary().tail, "child=");
    assert!(
        gone_soon(child).await,
        "background child {child} survived cancellation"
    );
}

/// Whether these tests run as root (only root can run a script as another user).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn a_script_runs_as_another_user_from_a_directory_only_that_user_reads() {
    let f = fixture();
    let mut spec = f.spec(
        "id -un\nstat -c '%U %a' \"$(dirname \"$0\")\" \"$0\"\n",
        LONG,
    );
    spec.user = Some("nobody".to_owned());
    let output = OutputSink::default();
    let result = f.runner().run(&spec, &output).await;
    if !is_root() {
        let err = result.expect_err("only root switches users");
        assert!(matches!(err, ProcessError::NotRoot { .. }), "{err:?}");
        return;
    }
    let outcome = result.expect("script runs");
    let tail = output.summary().tail;
    assert!(outcome.success(), "{outcome:?}: {tail}");
    assert_eq!(tail, "nobody\nnobody 700\nnobody 600\n");
}

#[tokio::test]
async fn an_unknown_user_is_refused_before_anything_runs() {
    if !is_root() {
        return;
    }
    let f = fixture();
    let mut spec = f.spec("echo ran", LONG);
    spec.user = Some("no-such-user-wharf".to_owned());
    let output = OutputSink::default();
    let err = f.runner().run(&spec, &output).await.expect_err("refused");
    assert!(matches!(err, ProcessError::UnknownUser { .. }), "{err:?}");
    assert_eq!(
        error_chain(&err),
        "user \"no-such-user-wharf\" does not exist on this host"
    );
}
