//! Unauthenticated endpoints: liveness (`/healthz`), readiness (`/readyz`), metrics,
//! the OpenAPI document, and the answers for unknown routes and methods.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::time::Duration;
use wharf_api::Health;

/// How long `/readyz` waits for the store before it answers 503.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Ready to serve: the store answers a cheap query within [`READY_TIMEOUT`].
///
/// Migrations need no query of their own: a store applies them when it opens, before
/// the server binds, and refuses to open a database whose applied migrations are
/// newer than this build or have changed (`wharf-store`'s `migrate.rs`). So a server
/// that answers at all runs on a current schema, and what can still go wrong is the
/// store not answering (a locked or lost database file, a stuck worker).
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, body = Health),
        (status = 503, body = wharf_api::ErrorBody, description = "the store does not answer")
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let not_ready = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready: {why}"),
        )
    };
    match tokio::time::timeout(READY_TIMEOUT, state.store.api_token_count()).await {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ready".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: the store failed");
            Err(not_ready("the store failed its check".to_owned()))
        }
        Err(_) => {
            tracing::warn!("readiness check: the store did not answer within 1s");
            Err(not_ready(format!(
                "the store did not answer within {}s",
                READY_TIMEOUT.as_secs()
            )))
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
