//! The console's pages of a group with its members, releases and execs.

use super::*;

pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub deployment: Option<String>,
    pub digest: String,
    pub digest_short: String,
    pub drift: bool,
}

pub struct Candidate {
    pub id: String,
    pub name: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    chrome: Chrome,
    app: String,
    name: String,
    created: When,
    current: Option<String>,
    previous: Option<String>,
    online: usize,
    drift: usize,
    members: Vec<MemberRow>,
    candidates: Vec<Candidate>,
    active: Option<ReleaseRow>,
    history: Vec<ReleaseRow>,
    /// The scaling group bound to this group, if any.
    scaling: Option<String>,
    execs: Vec<ExecRow>,
    form: FormState,
    action_error: Option<String>,
}

pub async fn group(
    operator: Operator,
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
) -> PageResult {
    group_page(
        &state,
        &operator,
        &app,
        &group,
        StatusCode::OK,
        FormState::default(),
        None,
    )
    .await
}

pub async fn group_page(
    state: &AppState,
    operator: &Operator,
    app: &str,
    group: &str,
    status: StatusCode,
    form: FormState,
    action_error: Option<String>,
) -> PageResult {
    let now = Utc::now();
    let caller = &operator.caller;
    let view = ops::groups::show(state, caller, app, group)
        .await
        .map_err(fail)?;
    let history = ops::releases::list(state, caller, Some(app), Some(group), 50)
        .await
        .map_err(fail)?;
    let all = ops::instances::list(state, caller).await.map_err(fail)?;
    let scaling = ops::scaling::bound_to(state, caller, app, group)
        .await
        .map_err(fail)?;
    let execs = ops::execs::list(state, caller, Some(app), Some(group), 20)
        .await
        .map_err(fail)?
        .iter()
        .map(|e| ExecRow::new(e, now))
        .collect();
    let members: Vec<MemberRow> = view
        .instances
        .into_iter()
        .map(|m| {
            let digest = m.image_digest.unwrap_or_default();
            MemberRow {
                drift: m.deployment != view.current_deployment,
                id: m.id,
                name: m.name,
                status: m.status,
                deployment: m.deployment,
                digest_short: fmt::short_digest(&digest),
                digest,
            }
        })
        .collect();
    let candidates = all
        .into_iter()
        .filter(|i| !members.iter().any(|m| m.id == i.id))
        .map(|i| Candidate {
            id: i.id,
            name: i.name,
            status: i.status,
        })
        .collect();
    let page = GroupPage {
        chrome: Chrome::new(operator, "apps"),
        app: view.app,
        name: view.name,
        created: When::new(view.created_at, now),
        current: view.current_deployment,
        previous: view.previous_deployment,
        online: members.iter().filter(|m| m.status == "online").count(),
        drift: members.iter().filter(|m| m.drift).count(),
        members,
        candidates,
        active: history
            .iter()
            .find(|r| !is_terminal(&r.state))
            .map(|r| ReleaseRow::new(r, now)),
        history: release_rows(&history, now),
        scaling,
        execs,
        form,
        action_error,
    };
    Ok(html(status, &page))
}
