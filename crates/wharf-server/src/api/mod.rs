//! The HTTP surface: `/api/v1/` for people and tools, `/agent/v1/` for agents,
//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document. Handlers are thin adapters:
//! they take the request apart, call one operation of the service layer (`ops`)
//! with the request's [`crate::ops::Caller`], and render its answer or its
//! `OpError` (as an `ApiError`).

pub(crate) mod agents;
pub(crate) mod apps;
pub(crate) mod deployments;
pub(crate) mod execs;
pub(crate) mod groups;
pub(crate) mod instances;
pub(crate) mod openapi;
pub(crate) mod registries;
pub(crate) mod releases;
pub(crate) mod scaling;
pub(crate) mod system;
pub(crate) mod work;

use crate::extract::MAX_BODY_BYTES;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

/// Every route of the server: the API's, the agents', and `pages` (the web
/// console's, which the caller passes in so that the API never names the console).
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let api = Router::new()
        // Registration tokens have a path of their own, not /instances/tokens, so that
        // no instance name can collide with it.
        .route(
            "/registration-tokens",
            post(instances::token_create).get(instances::token_list),
        )
        .route("/registration-tokens/{id}", delete(instances::token_delete))
        .route("/instances", get(instances::list))
        .route(
            "/instances/{instance}",
            get(instances::show).delete(instances::delete),
        )
        .route("/apps", post(apps::create).get(apps::list))
        .route("/apps/{app}", get(apps::show).delete(apps::delete))
        .route("/apps/{app}/groups", post(groups::create).get(groups::list))
        .route(
            "/apps/{app}/groups/{group}",
            get(groups::show).delete(groups::delete),
        )
        .route(
            "/apps/{app}/groups/{group}/instances",
            post(groups::add_instances),
        )
        .route(
            "/apps/{app}/groups/{group}/instances/remove",
            post(groups::remove_instances),
        )
        .route(
            "/registries",
            post(registries::create).get(registries::list),
        )
        .route(
            "/registries/{name}",
            get(registries::show).delete(registries::delete),
        )
        .route(
            "/apps/{app}/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route(
            "/apps/{app}/deployments/{name}",
            get(deployments::show).delete(deployments::delete),
        )
        .route(
            "/apps/{app}/groups/{group}/releases",
            post(releases::create),
        )
        .route(
            "/apps/{app}/groups/{group}/rollback",
            post(releases::rollback),
        )
        .route("/apps/{app}/groups/{group}/execs", post(execs::create))
        .route("/execs", get(execs::list))
        .route("/execs/{id}", get(execs::show))
        .route("/execs/{id}/cancel", post(execs::cancel))
        .route("/execs/{id}/logs", get(execs::logs))
        .route("/releases", get(releases::list))
        .route("/releases/{id}", get(releases::show))
        .route("/releases/{id}/continue", post(releases::continue_release))
        .route("/releases/{id}/cancel", post(releases::cancel))
        .route("/releases/{id}/logs", get(releases::logs))
        .route("/scaling-groups", post(scaling::create).get(scaling::list))
        .route(
            "/scaling-groups/{name}",
            get(scaling::show).delete(scaling::delete),
        )
        .route("/openapi.json", get(system::openapi));
    let agent = Router::new()
        .route("/register", post(agents::register))
        .route("/heartbeat", post(agents::heartbeat))
        .route("/deregister", post(agents::deregister))
        .route("/work", get(work::poll))
        .route("/releases/{id}/events", post(work::event));
    Router::new()
        .nest("/api/v1", api)
        .nest("/agent/v1", agent)
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .merge(pages)
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Answers 503 with `Retry-After` when `overload::MAX_IN_FLIGHT` requests are
/// under way already; agents' long polls are not counted (each agent has one
/// waiting for tens of seconds).
pub(crate) async fn shed(
    axum::extract::State(slots): axum::extract::State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.uri().path() == crate::overload::LONG_POLL_PATH {
        return next.run(request).await;
    }
    match slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => crate::error::ApiError::unavailable(
            "the server is handling too many requests at once; try again shortly",
        )
        .into_response(),
    }
}
