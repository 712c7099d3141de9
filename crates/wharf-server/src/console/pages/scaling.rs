//! The console's pages of scaling groups, read-only.

use super::*;

pub struct ScalingRow {
    pub name: String,
    pub app: String,
    pub group: String,
    pub state: String,
    pub status: String,
    /// The release holding the lease while suspended.
    pub suspended_by: Option<String>,
    pub suspended_at: Option<When>,
    pub held: usize,
    pub last_error: Option<String>,
    pub created: When,
}

impl ScalingRow {
    pub(super) fn new(s: &wharf_api::ScalingGroup, now: DateTime<Utc>) -> Self {
        Self {
            name: s.name.clone(),
            app: s.app.clone(),
            group: s.group.clone(),
            state: s.state.clone(),
            status: s.status.clone(),
            suspended_by: s.suspended_by.clone(),
            suspended_at: When::opt(s.suspended_at, now),
            held: s.pending.len(),
            last_error: s.last_error.clone(),
            created: When::new(s.created_at, now),
        }
    }
}

pub struct HeldRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub held: When,
}

pub struct ActivityRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub at: When,
}

pub struct HookRunRow {
    pub hook: String,
    pub release_id: Option<String>,
    pub attempt: u32,
    pub started: When,
    pub duration: Option<String>,
    /// `exit N`, or what kept the command from exiting (timeout, spawn error).
    pub exit: String,
    pub ok: bool,
    pub output: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/scaling.html")]
struct ScalingPage {
    chrome: Chrome,
    groups: Vec<ScalingRow>,
}

/// The scaling groups, with their lease state. Read-only: they are created and
/// deleted with the CLI or the API.
pub async fn scaling_groups(operator: Operator, State(state): State<AppState>) -> PageResult {
    let now = Utc::now();
    let groups = ops::scaling::list(&state, &operator.caller)
        .await
        .map_err(fail)?
        .iter()
        .map(|view| ScalingRow::new(view, now))
        .collect();
    let page = ScalingPage {
        chrome: Chrome::new(&operator, "scaling"),
        groups,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/scaling_group.html")]
struct ScalingGroupPage {
    chrome: Chrome,
    s: ScalingRow,
    on_suspend: Option<String>,
    on_resume: Option<String>,
    resume_attempts: u32,
    resume_hook_pending: bool,
    held: Vec<HeldRow>,
    activities: Vec<ActivityRow>,
    hook_runs: Vec<HookRunRow>,
}

pub async fn scaling_group(
    operator: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    let now = Utc::now();
    let view = ops::scaling::show(&state, &operator.caller, &name)
        .await
        .map_err(fail)?;
    let s = ScalingRow::new(&view, now);
    // The API lists history oldest first; the page shows the newest on top.
    let page = ScalingGroupPage {
        chrome: Chrome::new(&operator, "scaling"),
        s,
        on_suspend: view.on_suspend,
        on_resume: view.on_resume,
        resume_attempts: view.resume_attempts,
        resume_hook_pending: view.resume_hook_pending,
        held: view
            .pending
            .into_iter()
            .map(|h| HeldRow {
                id: h.instance_id,
                name: h.instance_name,
                state: h.state,
                held: When::new(h.held_at, now),
            })
            .collect(),
        activities: view
            .activities
            .into_iter()
            .rev()
            .map(|a| ActivityRow {
                id: a.instance_id,
                name: a.instance_name,
                kind: a.kind,
                at: When::new(a.at, now),
            })
            .collect(),
        hook_runs: view
            .hook_runs
            .into_iter()
            .rev()
            .map(|r| HookRunRow {
                ok: r.exit_code == Some(0) && r.error.is_none(),
                exit: match r.exit_code {
                    Some(code) => format!("exit {code}"),
                    None => "no exit code".to_owned(),
                },
                duration: fmt::span(Some(r.started_at), Some(r.finished_at), now),
                started: When::new(r.started_at, now),
                hook: r.hook,
                release_id: r.release_id,
                attempt: r.attempt,
                output: r.output,
                error: r.error,
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}
