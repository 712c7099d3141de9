//! The console's pages of one group exec with its hosts, read-only.

use super::*;

pub struct ExecRow {
    pub id: String,
    pub state: String,
    pub created: When,
    pub duration: Option<String>,
    pub failed: u32,
    pub total: u32,
    pub progress: Progress,
}

impl ExecRow {
    pub(super) fn new(e: &wharf_api::Exec, now: DateTime<Utc>) -> Self {
        Self {
            id: e.id.clone(),
            state: e.state.clone(),
            created: When::new(e.created_at, now),
            duration: fmt::span(e.started_at, e.finished_at, now),
            failed: e.counts.failed,
            total: e.counts.total,
            progress: Progress::new(&e.counts),
        }
    }
}

pub struct ExecHostRow {
    pub id: String,
    pub name: String,
    pub batch: u32,
    pub state: String,
    pub exit_code: Option<i32>,
    pub exit_ok: bool,
    pub duration: Option<String>,
    pub message: Option<String>,
    pub output: String,
    pub dropped: Option<String>,
}

#[derive(Template)]
#[template(path = "console/exec.html")]
struct ExecPage {
    chrome: Chrome,
    e: ExecRow,
    app: String,
    group: String,
    script: String,
    timeout: String,
    as_user: Option<String>,
    message: Option<String>,
    started: Option<When>,
    finished: Option<When>,
    counts: InstanceCounts,
    terminal: bool,
    hosts: Vec<ExecHostRow>,
}

/// A group exec: its script and, per instance, state, exit code, duration and
/// output. No live updates: reloading shows the progress.
pub async fn exec(
    operator: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    let now = Utc::now();
    let view = ops::execs::view(&state, &operator.caller, &id)
        .await
        .map_err(fail)?;
    let logs = release_logs(&state, &operator.caller, &id)
        .await
        .map_err(fail)?;
    let mut hosts = Vec::new();
    for b in &view.batches {
        for i in &b.instances {
            let step = i.steps.iter().find(|s| s.name == "exec");
            let log = logs.iter().find(|l| l.instance_id == i.id);
            let exit_code = step
                .and_then(|s| s.exit_code)
                .or_else(|| log.and_then(|l| l.exit_code));
            hosts.push(ExecHostRow {
                id: i.id.clone(),
                name: i.name.clone(),
                batch: b.number,
                state: i.state.clone(),
                exit_code,
                exit_ok: exit_code == Some(0),
                duration: fmt::span(i.started_at, i.finished_at, now),
                message: i.message.clone(),
                output: log.map(|l| l.output.clone()).unwrap_or_default(),
                dropped: log
                    .filter(|l| l.dropped_bytes > 0)
                    .map(|l| fmt::bytes(l.dropped_bytes)),
            });
        }
    }
    let page = ExecPage {
        chrome: Chrome::new(&operator, "apps"),
        e: ExecRow::new(&view, now),
        app: view.app,
        group: view.group,
        script: view.script,
        timeout: fmt::secs(view.timeout_secs),
        as_user: view.as_user,
        message: view.message,
        started: When::opt(view.started_at, now),
        finished: When::opt(view.finished_at, now),
        counts: view.counts,
        terminal: is_terminal(&view.state),
        hosts,
    };
    Ok(html(StatusCode::OK, &page))
}
