//! The console's pages: a model per page, built from the API's views, and the GET
//! handlers that render them. Form handlers (`forms`) render the same pages again
//! with what was typed and the error when a form is refused.

use super::fmt::{self, When};
use super::session::{self, FormData, Operator, LOGIN_COOKIE};
use crate::error::ApiError;
use crate::ops::{self, Caller, OpError};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use wharf_api::{InstanceCounts, Release, StepLog};
use wharf_domain::release::ReleaseState;

pub type PageResult = Result<Response, Response>;

/// What every page of the signed-in console shows around its content.
pub struct Chrome {
    pub csrf: String,
    pub nav: &'static str,
    pub version: &'static str,
    pub app_version: &'static str,
}

impl Chrome {
    pub fn new(operator: &Operator, nav: &'static str) -> Self {
        Self {
            csrf: operator.csrf.clone(),
            nav,
            version: super::asset_version(),
            app_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Renders a page with a status.
pub fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: String,
    message: &'a str,
    version: &'static str,
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        status: status.to_string(),
        message,
        version: super::asset_version(),
    };
    html(status, &page)
}

/// An API error as a page.
pub fn fail(err: impl Into<ApiError>) -> Response {
    let err = err.into();
    error_page(err.status, &err.message)
}

/// What a form had in it, and why it was refused.
#[derive(Debug, Default)]
pub struct FormState {
    pub values: FormData,
    pub error: Option<String>,
    pub field: Option<String>,
}

impl FormState {
    /// An empty form with starting values.
    pub fn with(defaults: &[(&str, &str)]) -> Self {
        Self {
            values: FormData(
                defaults
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    /// The form as submitted, with the error that refused it.
    pub fn refused(values: FormData, err: &ApiError) -> Self {
        Self {
            values,
            error: Some(err.message.clone()),
            field: err.field.clone(),
        }
    }

    pub fn value(&self, name: &str) -> &str {
        self.values.get(name)
    }

    pub fn checked(&self, name: &str) -> bool {
        self.values.checked(name)
    }

    /// Whether field `name` holds `value` (a selected option).
    pub fn is(&self, name: &str, value: &str) -> bool {
        self.values.get(name) == value
    }

    /// Whether `value` is one of the values of `name` (a ticked checkbox).
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.values.0.iter().any(|(k, v)| k == name && v == value)
    }

    /// Whether the error is about field `name`.
    pub fn invalid(&self, name: &str) -> bool {
        self.field.as_deref() == Some(name)
    }
}

// ---------------------------------------------------------------- shared pieces

pub struct Seg {
    pub class: &'static str,
    pub x: String,
    pub width: String,
}

/// A release's instances as a bar: succeeded, failed, running, cancelled; the rest
/// (pending) is the track.
pub struct Progress {
    pub segs: Vec<Seg>,
    pub label: String,
}

impl Progress {
    pub fn new(counts: &InstanceCounts) -> Self {
        let total = counts.total.max(1) as f64;
        let mut x = 0.0;
        let mut segs = Vec::new();
        for (class, n) in [
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
            ("running", counts.running),
            ("cancelled", counts.cancelled),
        ] {
            let width = n as f64 * 100.0 / total;
            segs.push(Seg {
                class,
                x: format!("{x:.2}"),
                width: format!("{width:.2}"),
            });
            x += width;
        }
        let done = counts.succeeded + counts.failed + counts.cancelled;
        Self {
            segs,
            label: format!("{done}/{} done", counts.total),
        }
    }
}

pub struct ReleaseRow {
    pub id: String,
    pub app: String,
    pub group: String,
    pub deployment: String,
    pub state: String,
    pub kind: String,
    pub progress: Progress,
    pub created: When,
    pub duration: Option<String>,
}

impl ReleaseRow {
    pub fn new(r: &Release, now: DateTime<Utc>) -> Self {
        Self {
            id: r.id.clone(),
            app: r.app.clone(),
            group: r.group.clone(),
            deployment: r.deployment.clone(),
            state: r.state.clone(),
            kind: r.kind.clone(),
            progress: Progress::new(&r.counts),
            created: When::new(r.created_at, now),
            duration: fmt::span(r.started_at, r.finished_at, now),
        }
    }
}

pub fn is_terminal(state: &str) -> bool {
    ReleaseState::parse(state).is_some_and(|s| s.is_terminal())
}

fn release_rows(releases: &[Release], now: DateTime<Utc>) -> Vec<ReleaseRow> {
    releases.iter().map(|r| ReleaseRow::new(r, now)).collect()
}

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub next: String,
    pub error: Option<String>,
    pub version: &'static str,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The sign-in page. Its form is protected by a double-submit token: the same
/// random value in a short-lived cookie and in the form.
pub async fn login(
    operator: Result<Operator, Response>,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = session::local_path(query.next.as_deref());
    if operator.is_ok() {
        return Redirect::to(&next).into_response();
    }
    login_page(StatusCode::OK, next, None)
}

/// The sign-in page with a fresh login CSRF token.
pub fn login_page(status: StatusCode, next: String, error: Option<String>) -> Response {
    let csrf = crate::secrets::generate_secret("");
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        error,
        version: super::asset_version(),
    };
    let mut response = html(status, &page);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, &csrf, "/login", Duration::from_secs(3600)),
    );
    response
}

// ---------------------------------------------------------------- overview

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    instances: usize,
    online: usize,
    apps: usize,
    active: Vec<ReleaseRow>,
    recent: Vec<ReleaseRow>,
    offline: Vec<InstanceRow>,
}

pub async fn overview(operator: Operator, State(state): State<AppState>) -> PageResult {
    let now = Utc::now();
    let caller = &operator.caller;
    let instances = ops::instances::list(&state, caller).await.map_err(fail)?;
    let apps = ops::apps::list(&state, caller).await.map_err(fail)?;
    let active = ops::releases::active(&state, caller).await.map_err(fail)?;
    let recent = ops::releases::list(&state, caller, None, None, 10)
        .await
        .map_err(fail)?;
    let online = instances.iter().filter(|i| i.status == "online").count();
    let page = OverviewPage {
        chrome: Chrome::new(&operator, "overview"),
        instances: instances.len(),
        online,
        apps: apps.len(),
        active: release_rows(&active, now),
        recent: release_rows(&recent, now),
        offline: instances
            .into_iter()
            .filter(|i| i.status != "online")
            .map(|i| InstanceRow::new(i, now))
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

// ---------------------------------------------------------------- instances

pub struct MembershipRow {
    pub app: String,
    pub group: String,
    pub deployment: Option<String>,
    pub digest: String,
    pub digest_short: String,
}

pub struct InstanceRow {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub address: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub scaling_group: Option<String>,
    /// The Docker Engine's version, when the agent last found it answering.
    pub docker_version: Option<String>,
    /// Why the agent last found no working Docker Engine.
    pub docker_error: Option<String>,
    pub registered: When,
    pub last_heartbeat: Option<When>,
    pub groups: Vec<MembershipRow>,
}

impl InstanceRow {
    fn new(i: wharf_api::Instance, now: DateTime<Utc>) -> Self {
        Self {
            registered: When::new(i.registered_at, now),
            last_heartbeat: When::opt(i.last_heartbeat_at, now),
            groups: i
                .groups
                .into_iter()
                .map(|g| {
                    let digest = g.image_digest.unwrap_or_default();
                    MembershipRow {
                        app: g.app,
                        group: g.group,
                        deployment: g.deployment,
                        digest_short: fmt::short_digest(&digest),
                        digest,
                    }
                })
                .collect(),
            id: i.id,
            name: i.name,
            hostname: i.hostname,
            status: i.status,
            labels: i.labels,
            address: i.address,
            os: i.os,
            arch: i.arch,
            agent_version: i.agent_version,
            scaling_group: i.scaling_group,
            docker_version: i.docker_version,
            docker_error: i.docker_error,
        }
    }
}

pub struct NewToken {
    pub id: String,
    pub token: String,
    pub expires: String,
    pub uses: u32,
    pub command: String,
}

#[derive(Template)]
#[template(path = "console/instances.html")]
struct InstancesPage {
    chrome: Chrome,
    instances: Vec<InstanceRow>,
    form: FormState,
    new_token: Option<NewToken>,
}

pub async fn instances(operator: Operator, State(state): State<AppState>) -> PageResult {
    instances_page(
        &state,
        &operator,
        StatusCode::OK,
        FormState::with(&[("ttl_secs", "3600"), ("uses", "1")]),
        None,
    )
    .await
}

pub async fn instances_page(
    state: &AppState,
    operator: &Operator,
    status: StatusCode,
    form: FormState,
    new_token: Option<NewToken>,
) -> PageResult {
    let now = Utc::now();
    let instances = ops::instances::list(state, &operator.caller)
        .await
        .map_err(fail)?;
    let page = InstancesPage {
        chrome: Chrome::new(operator, "instances"),
        instances: instances
            .into_iter()
            .map(|i| InstanceRow::new(i, now))
            .collect(),
        form,
        new_token,
    };
    Ok(html(status, &page))
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage {
    chrome: Chrome,
    i: InstanceRow,
}

pub async fn instance(
    operator: Operator,
    State(state): State<AppState>,
    Path(instance): Path<String>,
) -> PageResult {
    let view = ops::instances::show(&state, &operator.caller, &instance)
        .await
        .map_err(fail)?;
    let page = InstancePage {
        chrome: Chrome::new(&operator, "instances"),
        i: InstanceRow::new(view, Utc::now()),
    };
    Ok(html(StatusCode::OK, &page))
}

// ---------------------------------------------------------------- applications

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

// ---------------------------------------------------------------- groups

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

// ---------------------------------------------------------------- deployments

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

// ---------------------------------------------------------------- registries

pub struct RegistryRow {
    pub name: String,
    pub endpoint: String,
    pub private_endpoint: Option<String>,
    pub username: Option<String>,
    pub has_password: bool,
    pub insecure: bool,
    pub created: When,
}

impl RegistryRow {
    fn new(r: wharf_api::Registry, now: DateTime<Utc>) -> Self {
        Self {
            created: When::new(r.created_at, now),
            name: r.name,
            endpoint: r.endpoint,
            private_endpoint: r.private_endpoint,
            username: r.username,
            has_password: r.has_password,
            insecure: r.insecure,
        }
    }
}

#[derive(Template)]
#[template(path = "console/registries.html")]
struct RegistriesPage {
    chrome: Chrome,
    registries: Vec<RegistryRow>,
}

pub async fn registries(operator: Operator, State(state): State<AppState>) -> PageResult {
    let now = Utc::now();
    let registries = ops::registries::list(&state, &operator.caller)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| RegistryRow::new(r, now))
        .collect();
    let page = RegistriesPage {
        chrome: Chrome::new(&operator, "registries"),
        registries,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/registry.html")]
struct RegistryPage {
    chrome: Chrome,
    r: RegistryRow,
    /// Application, deployment and registry address of each deployment using it.
    used_by: Vec<(String, String, String)>,
}

pub async fn registry(
    operator: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    let caller = &operator.caller;
    let registry = ops::registries::show(&state, caller, &name)
        .await
        .map_err(fail)?;
    let mut used_by = Vec::new();
    for app in ops::apps::list(&state, caller).await.map_err(fail)? {
        for d in ops::deployments::list(&state, caller, &app.name)
            .await
            .map_err(fail)?
        {
            if d.image.as_ref().is_some_and(|i| i.registry == name) {
                used_by.push((
                    app.name.clone(),
                    d.name,
                    d.registry_address.unwrap_or_default(),
                ));
            }
        }
    }
    let page = RegistryPage {
        chrome: Chrome::new(&operator, "registries"),
        r: RegistryRow::new(registry, Utc::now()),
        used_by,
    };
    Ok(html(StatusCode::OK, &page))
}

// ---------------------------------------------------------------- releases

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

// ---------------------------------------------------------------- scaling groups

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
    fn new(s: &wharf_api::ScalingGroup, now: DateTime<Utc>) -> Self {
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

// ---------------------------------------------------------------- group execs

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
    fn new(e: &wharf_api::Exec, now: DateTime<Utc>) -> Self {
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

/// The request's own origin, for the agent command shown with a new token.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'))
        })
        .unwrap_or("SERVER:7700");
    format!("http://{host}")
}
