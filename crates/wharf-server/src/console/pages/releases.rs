//! The console's pages of release lists, a new release's form and one release with its batches, instances and steps.

use super::*;

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ReleasesPage {
    chrome: Chrome,
    app: Option<String>,
    group: Option<String>,
    releases: Vec<ReleaseRow>,
}

#[derive(Deserialize)]
pub struct ReleasesQuery {
    app: Option<String>,
    group: Option<String>,
}

pub async fn releases(
    operator: Operator,
    State(state): State<AppState>,
    Query(query): Query<ReleasesQuery>,
) -> PageResult {
    let app = query.app.filter(|a| !a.is_empty());
    let group = query.group.filter(|g| !g.is_empty() && app.is_some());
    let releases = ops::releases::list(
        &state,
        &operator.caller,
        app.as_deref(),
        group.as_deref(),
        200,
    )
    .await
    .map_err(fail)?;
    let page = ReleasesPage {
        chrome: Chrome::new(&operator, "releases"),
        releases: release_rows(&releases, Utc::now()),
        app,
        group,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/release_new.html")]
struct ReleaseNewPage {
    chrome: Chrome,
    app: String,
    group: String,
    members: usize,
    current: Option<String>,
    deployments: Vec<String>,
    form: FormState,
}

#[derive(Deserialize)]
pub struct ReleaseNewQuery {
    deployment: Option<String>,
}

pub async fn release_new(
    operator: Operator,
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
    Query(query): Query<ReleaseNewQuery>,
) -> PageResult {
    let mut form = FormState::with(&[
        ("batches", "1"),
        ("pause", "auto"),
        ("batch_interval_secs", "0"),
        ("max_failures", "0"),
    ]);
    if let Some(deployment) = query.deployment {
        form.values.0.push(("deployment".into(), deployment));
    }
    release_new_page(&state, &operator, &app, &group, StatusCode::OK, form).await
}

pub async fn release_new_page(
    state: &AppState,
    operator: &Operator,
    app: &str,
    group: &str,
    status: StatusCode,
    mut form: FormState,
) -> PageResult {
    let caller = &operator.caller;
    let record = ops::groups::show(state, caller, app, group)
        .await
        .map_err(fail)?;
    let members = record.instances.len();
    // Newest deployment first: the one people usually publish.
    let mut deployments = ops::deployments::list(state, caller, app)
        .await
        .map_err(fail)?;
    deployments.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    let deployments: Vec<String> = deployments.into_iter().map(|d| d.name).collect();
    if form.value("deployment").is_empty() {
        if let Some(first) = deployments.first() {
            form.values.0.push(("deployment".into(), first.clone()));
        }
    }
    let page = ReleaseNewPage {
        chrome: Chrome::new(operator, "apps"),
        app: record.app,
        group: record.name,
        members,
        current: record.current_deployment,
        deployments,
        form,
    };
    Ok(html(status, &page))
}

pub struct ReleaseHead {
    pub id: String,
    pub app: String,
    pub group: String,
    pub deployment: String,
    pub state: String,
    pub kind: String,
    pub pause: String,
    pub batch_count: u32,
    pub batch_interval: String,
    pub max_failures: u32,
    pub rollback_on_failure: bool,
    pub rollback_of: Option<String>,
    /// The automatic rollback started when this release failed.
    pub rolled_back_by: Option<String>,
    pub message: Option<String>,
    pub created: When,
    pub started: Option<When>,
    pub finished: Option<When>,
    pub duration: Option<String>,
    /// When the release runs: its start, for the script to keep the duration fresh.
    pub running_since: Option<String>,
}

pub struct StepView {
    pub name: String,
    pub state: String,
    pub duration: Option<String>,
    pub since: Option<String>,
    pub title: String,
}

pub struct LogView {
    pub step: String,
    pub state: String,
    pub exit_code: Option<i32>,
    pub output: String,
    pub dropped: Option<String>,
    pub message: Option<String>,
}

pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub state: String,
    pub duration: Option<String>,
    pub since: Option<String>,
    pub message: Option<String>,
    pub steps: Vec<StepView>,
    pub logs: Vec<LogView>,
}

pub struct BatchView {
    pub number: u32,
    pub state: String,
    pub instances: Vec<InstanceView>,
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    chrome: Chrome,
    r: ReleaseHead,
    counts: InstanceCounts,
    progress: Progress,
    batches: Vec<BatchView>,
    banner: String,
    banner_class: &'static str,
    live: bool,
    can_continue: bool,
    can_cancel: bool,
    can_rollback: bool,
    has_previous: bool,
    rollback_after_success: bool,
    action_error: Option<String>,
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The banner above a release: what it waits for or how it ended. The same
/// wording is in `console.js`.
fn banner(r: &Release) -> (String, &'static str) {
    let done = r
        .batches
        .iter()
        .filter(|b| matches!(b.state.as_str(), "succeeded" | "failed" | "cancelled"))
        .count();
    match r.state.as_str() {
        "pending" => ("Waiting to start.".into(), "info"),
        "running" => {
            let current = (done + 1).min(r.batch_count as usize);
            (
                format!("Publishing batch {current} of {}.", r.batch_count),
                "info",
            )
        }
        "paused" => (
            format!(
                "Paused after batch {done} of {}. Check the instances below, then continue to publish batch {}.",
                r.batch_count,
                done + 1
            ),
            "warn",
        ),
        "succeeded" => (
            format!("Succeeded: {}/{} runs {}.", r.app, r.group, r.deployment),
            "ok",
        ),
        "failed" => (
            format!(
                "Failed: {}",
                r.message.as_deref().unwrap_or("the release failed")
            ),
            "error",
        ),
        "cancelled" => (
            format!(
                "Cancelled: {}",
                r.message.as_deref().unwrap_or("cancelled by an operator")
            ),
            "muted",
        ),
        _ => (String::new(), "info"),
    }
}

fn release_model(
    r: &Release,
    logs: &[StepLog],
    now: DateTime<Utc>,
) -> (ReleaseHead, Vec<BatchView>) {
    let head = ReleaseHead {
        id: r.id.clone(),
        app: r.app.clone(),
        group: r.group.clone(),
        deployment: r.deployment.clone(),
        state: r.state.clone(),
        kind: r.kind.clone(),
        pause: r.pause.clone(),
        batch_count: r.batch_count,
        batch_interval: fmt::secs(r.batch_interval_secs),
        max_failures: r.max_failures,
        rollback_on_failure: r.rollback_on_failure,
        rollback_of: r.rollback_of.clone(),
        rolled_back_by: r.rolled_back_by.clone(),
        message: r.message.clone(),
        created: When::new(r.created_at, now),
        started: When::opt(r.started_at, now),
        finished: When::opt(r.finished_at, now),
        duration: fmt::span(r.started_at, r.finished_at, now),
        running_since: match (r.started_at, r.finished_at) {
            (Some(start), None) => Some(iso(start)),
            _ => None,
        },
    };
    let batches = r
        .batches
        .iter()
        .map(|b| BatchView {
            number: b.number,
            state: b.state.clone(),
            instances: b
                .instances
                .iter()
                .map(|i| InstanceView {
                    id: i.id.clone(),
                    name: i.name.clone(),
                    state: i.state.clone(),
                    duration: fmt::span(i.started_at, i.finished_at, now),
                    since: match (i.started_at, i.finished_at) {
                        (Some(start), None) => Some(iso(start)),
                        _ => None,
                    },
                    message: i.message.clone(),
                    steps: i
                        .steps
                        .iter()
                        .map(|s| StepView {
                            name: s.name.clone(),
                            state: s.state.clone(),
                            duration: fmt::span(Some(s.started_at), s.finished_at, now),
                            since: s.finished_at.is_none().then(|| iso(s.started_at)),
                            title: step_title(s),
                        })
                        .collect(),
                    logs: logs
                        .iter()
                        .filter(|l| l.instance_id == i.id)
                        .map(|l| LogView {
                            step: l.step.clone(),
                            state: l.state.clone(),
                            exit_code: l.exit_code,
                            output: l.output.clone(),
                            dropped: (l.dropped_bytes > 0).then(|| fmt::bytes(l.dropped_bytes)),
                            message: l.message.clone(),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    (head, batches)
}

/// The tooltip of a step: its state, exit code and message.
fn step_title(s: &wharf_api::ReleaseStep) -> String {
    let mut title = format!("{}: {}", s.name, s.state);
    if let Some(code) = s.exit_code {
        title.push_str(&format!(", exit {code}"));
    }
    if let Some(message) = &s.message {
        title.push_str(&format!(" — {message}"));
    }
    title
}

pub async fn release(
    operator: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    release_page(&state, &operator, &id, StatusCode::OK, None).await
}

pub async fn release_page(
    state: &AppState,
    operator: &Operator,
    id: &str,
    status: StatusCode,
    action_error: Option<String>,
) -> PageResult {
    let now = Utc::now();
    let caller = &operator.caller;
    let view = ops::releases::view(state, caller, id).await.map_err(fail)?;
    let logs = release_logs(state, caller, id).await.map_err(fail)?;
    // Whether `rollback` has something to publish, now and once this release
    // succeeds (success makes the group's current deployment its previous one).
    let (has_previous, rollback_after_success) =
        match ops::groups::fetch(state, caller, &view.app, &view.group).await {
            Ok(group) => (
                group.previous_deployment.is_some(),
                group.previous_deployment.is_some()
                    || group
                        .current_deployment
                        .is_some_and(|current| current != view.deployment),
            ),
            Err(_) => (false, false),
        };
    let terminal = is_terminal(&view.state);
    let (head, batches) = release_model(&view, &logs, now);
    let (banner, banner_class) = banner(&view);
    let page = ReleasePage {
        chrome: Chrome::new(operator, "releases"),
        counts: view.counts.clone(),
        progress: Progress::new(&view.counts),
        can_continue: view.state == "paused",
        can_cancel: !terminal,
        can_rollback: terminal && has_previous,
        has_previous,
        rollback_after_success,
        live: !terminal,
        r: head,
        batches,
        banner,
        banner_class,
        action_error,
    };
    Ok(html(status, &page))
}

/// The output of every step of a release (or exec).
pub async fn release_logs(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Vec<StepLog>, OpError> {
    ops::releases::step_logs(state, caller, id, None, None).await
}
