//! The console's pages: a model per page, built from the service layer's views,
//! and the GET handlers that render them, one module per resource as in `api/`;
//! this module has what they share, sign-in and the overview. Form handlers
//! (`forms`) render the same pages again with what was typed and the error when
//! a form is refused.

mod apps;
mod deployments;
mod execs;
mod groups;
mod instances;
mod registries;
mod releases;
mod scaling;

pub use apps::*;
pub use deployments::*;
pub use execs::*;
pub use groups::*;
pub use instances::*;
pub use registries::*;
pub use releases::*;
pub use scaling::*;

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
