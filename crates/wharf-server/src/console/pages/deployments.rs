//! The console's pages of a new deployment's form and one deployment.

use super::*;

#[derive(Template)]
#[template(path = "console/deployment_new.html")]
struct DeploymentNewPage {
    chrome: Chrome,
    app: String,
    registries: Vec<String>,
    form: FormState,
}

pub async fn deployment_new(
    operator: Operator,
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> PageResult {
    deployment_new_page(
        &state,
        &operator,
        &app,
        StatusCode::OK,
        FormState::with(&[("type", "docker-image")]),
    )
    .await
}

pub async fn deployment_new_page(
    state: &AppState,
    operator: &Operator,
    app: &str,
    status: StatusCode,
    form: FormState,
) -> PageResult {
    let record = ops::apps::show(state, &operator.caller, app)
        .await
        .map_err(fail)?;
    let registries = ops::registries::list(state, &operator.caller)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let page = DeploymentNewPage {
        chrome: Chrome::new(operator, "apps"),
        app: record.name,
        registries,
        form,
    };
    Ok(html(status, &page))
}

#[derive(Template)]
#[template(path = "console/deployment.html")]
struct DeploymentPage {
    chrome: Chrome,
    d: wharf_api::Deployment,
    created: When,
    groups: Vec<String>,
    pull: String,
    script: String,
    verify_t: String,
}

pub async fn deployment(
    operator: Operator,
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
) -> PageResult {
    let d = ops::deployments::show(&state, &operator.caller, &app, &name)
        .await
        .map_err(fail)?;
    let groups = ops::groups::names(&state, &operator.caller, &app)
        .await
        .map_err(fail)?;
    let page = DeploymentPage {
        chrome: Chrome::new(&operator, "apps"),
        created: When::new(d.created_at, Utc::now()),
        pull: fmt::secs(d.timeouts.pull_secs),
        script: fmt::secs(d.timeouts.script_secs),
        verify_t: fmt::secs(d.timeouts.verify_secs),
        d,
        groups,
    };
    Ok(html(StatusCode::OK, &page))
}
