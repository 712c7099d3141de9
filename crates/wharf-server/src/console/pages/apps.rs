//! The console's pages of applications: the list and one application with its groups and deployments.

use super::*;

pub struct AppRow {
    pub name: String,
    pub description: String,
    pub groups: usize,
    pub deployments: usize,
    pub created: When,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppRow>,
    form: FormState,
}

pub async fn apps(operator: Operator, State(state): State<AppState>) -> PageResult {
    apps_page(&state, &operator, StatusCode::OK, FormState::default()).await
}

pub async fn apps_page(
    state: &AppState,
    operator: &Operator,
    status: StatusCode,
    form: FormState,
) -> PageResult {
    let now = Utc::now();
    let mut apps = Vec::new();
    for app in ops::apps::list(state, &operator.caller)
        .await
        .map_err(fail)?
    {
        apps.push(AppRow {
            groups: app.groups.len(),
            deployments: app.deployments.len(),
            created: When::new(app.created_at, now),
            name: app.name,
            description: app.description,
        });
    }
    let page = AppsPage {
        chrome: Chrome::new(operator, "apps"),
        apps,
        form,
    };
    Ok(html(status, &page))
}

pub struct GroupRow {
    pub name: String,
    pub members: usize,
    pub online: usize,
    pub current: Option<String>,
    pub drift: usize,
    /// The active release's id and state.
    pub active: Option<(String, String)>,
}

pub struct DeploymentRow {
    pub name: String,
    pub kind: String,
    pub address: Option<String>,
    pub workdir: String,
    pub created: When,
}

#[derive(Template)]
#[template(path = "console/app.html")]
struct AppPage {
    chrome: Chrome,
    name: String,
    description: String,
    created: When,
    groups: Vec<GroupRow>,
    deployments: Vec<DeploymentRow>,
    releases: Vec<ReleaseRow>,
    form: FormState,
}

pub async fn app(
    operator: Operator,
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> PageResult {
    app_page(
        &state,
        &operator,
        &app,
        StatusCode::OK,
        FormState::default(),
    )
    .await
}

pub async fn app_page(
    state: &AppState,
    operator: &Operator,
    app: &str,
    status: StatusCode,
    form: FormState,
) -> PageResult {
    let now = Utc::now();
    let caller = &operator.caller;
    let record = ops::apps::show(state, caller, app).await.map_err(fail)?;
    let releases = ops::releases::list(state, caller, Some(app), None, 20)
        .await
        .map_err(fail)?;
    let mut groups = Vec::new();
    for group in ops::groups::list(state, caller, app).await.map_err(fail)? {
        let active = ops::releases::list(state, caller, Some(app), Some(&group.name), 1)
            .await
            .map_err(fail)?
            .into_iter()
            .find(|r| !is_terminal(&r.state))
            .map(|r| (r.id, r.state));
        groups.push(GroupRow {
            members: group.instances.len(),
            online: group
                .instances
                .iter()
                .filter(|m| m.status == "online")
                .count(),
            drift: group
                .instances
                .iter()
                .filter(|m| m.deployment != group.current_deployment)
                .count(),
            current: group.current_deployment,
            name: group.name,
            active,
        });
    }
    let deployments = ops::deployments::list(state, caller, app)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|d| DeploymentRow {
            name: d.name,
            kind: d.kind,
            address: d.registry_address,
            workdir: d.workdir,
            created: When::new(d.created_at, now),
        })
        .collect();
    let page = AppPage {
        chrome: Chrome::new(operator, "apps"),
        name: record.name,
        description: record.description,
        created: When::new(record.created_at, now),
        groups,
        deployments,
        releases: release_rows(&releases, now),
        form,
    };
    Ok(html(status, &page))
}
