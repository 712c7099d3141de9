//! The web console at `/`: server-rendered HTML pages for every resource, forms
//! that create applications, groups, deployments and releases, and a release page
//! that follows progress live over server-sent events.
//!
//! The console is a second face of the same application logic: its handlers call
//! the service layer's operations the API handlers call (`ops::apps::create`,
//! `ops::releases::continue_release`, ...) as the session's `Caller`, so
//! validation and error messages are the API's. Forms are turned into the API's
//! request types first. The console never uses `api`.
//!
//! - `session`: sign-in sessions (HttpOnly, SameSite=Strict cookie), CSRF tokens,
//!   the `Operator` and `Submitted` extractors.
//! - `pages`: GET handlers and the page models the templates render
//!   (`templates/console/*.html`, checked at compile time by askama, escaped by
//!   default).
//! - `forms`: POST handlers.
//! - `live`: the server-sent event stream of a release.
//! - `assets`: one stylesheet, one script, an icon, compiled into the binary.

mod fmt;
mod forms;
mod live;
mod pages;
mod session;

use crate::state::AppState;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// What the console's pages may load and where they may send forms: only this
/// server, no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, which `lib.rs` hands to `api::router` to merge in.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login).post(forms::login))
        .route("/logout", post(forms::logout))
        .route("/instances", get(pages::instances))
        .route("/instances/{instance}", get(pages::instance))
        .route("/registration-tokens", post(forms::create_token))
        .route("/apps", get(pages::apps).post(forms::create_app))
        .route("/apps/{app}", get(pages::app))
        .route("/apps/{app}/groups", post(forms::create_group))
        .route("/apps/{app}/groups/{group}", get(pages::group))
        .route(
            "/apps/{app}/groups/{group}/instances",
            post(forms::add_members),
        )
        .route(
            "/apps/{app}/groups/{group}/instances/remove",
            post(forms::remove_members),
        )
        .route(
            "/apps/{app}/groups/{group}/releases/new",
            get(pages::release_new),
        )
        .route(
            "/apps/{app}/groups/{group}/releases",
            post(forms::create_release),
        )
        .route("/apps/{app}/groups/{group}/rollback", post(forms::rollback))
        .route("/apps/{app}/deployments/new", get(pages::deployment_new))
        .route("/apps/{app}/deployments", post(forms::create_deployment))
        .route("/apps/{app}/deployments/{name}", get(pages::deployment))
        .route("/registries", get(pages::registries))
        .route("/registries/{name}", get(pages::registry))
        .route("/releases", get(pages::releases))
        .route("/releases/{id}", get(pages::release))
        .route("/releases/{id}/continue", post(forms::continue_release))
        .route("/releases/{id}/cancel", post(forms::cancel_release))
        .route("/scaling-groups", get(pages::scaling_groups))
        .route("/scaling-groups/{name}", get(pages::scaling_group))
        .route("/execs/{id}", get(pages::exec))
        .route("/console/releases/{id}/events", get(live::release_events))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/assets/favicon.svg", get(favicon))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(Extension(session::Sessions::default()))
}

/// Headers on every console answer: the content security policy (defence in
/// depth behind template escaping), no sniffing, no framing, no referrer to
/// other sites.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON)
}

/// Changes whenever an asset does, so that browsers fetch the new one.
fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let digest = crate::secrets::hash_token(&format!("{CSS}{JS}{FAVICON}"));
        format!("{}-{}", env!("CARGO_PKG_VERSION"), &digest[..8])
    })
}
