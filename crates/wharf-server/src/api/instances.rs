//! `/api/v1/instances`: registered hosts and the registration tokens agents use to
//! join.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::secrets::{generate_id, generate_secret, hash_token, REGISTRATION_TOKEN_PREFIX};
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Instance, RegistrationToken, RegistrationTokenCreate};
use wharf_store::RegistrationTokenRecord;

/// A registration token lives one day unless asked otherwise.
const DEFAULT_TTL_SECS: u64 = 24 * 3600;
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
const MAX_USES: u32 = 100_000;

#[utoipa::path(post, path = "/api/v1/registration-tokens", request_body = RegistrationTokenCreate,
    responses((status = 201, body = RegistrationToken), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn token_create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegistrationTokenCreate>,
) -> ApiResult<(StatusCode, Json<RegistrationToken>)> {
    Ok((StatusCode::CREATED, Json(create_token(&state, body).await?)))
}

/// Checks the request and stores a new registration token; the answer is the only
/// place its secret appears (the API and the console).
pub(crate) async fn create_token(
    state: &AppState,
    body: RegistrationTokenCreate,
) -> ApiResult<RegistrationToken> {
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::invalid(
            "ttl_secs",
            format!("ttl_secs: must be from 1 second to {MAX_TTL_SECS} seconds (365 days)"),
        ));
    }
    let uses = body.uses.unwrap_or(1);
    if uses == 0 || uses > MAX_USES {
        return Err(ApiError::invalid(
            "uses",
            format!("uses: must be from 1 to {MAX_USES}"),
        ));
    }
    let token = generate_secret(REGISTRATION_TOKEN_PREFIX);
    let now = chrono::Utc::now();
    let record = RegistrationTokenRecord {
        id: generate_id("rt"),
        hash: hash_token(&token),
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl as i64),
        uses,
        uses_left: uses,
    };
    state.store.registration_token_create(&record).await?;
    Ok(views::registration_token(record, Some(token)))
}

#[utoipa::path(get, path = "/api/v1/registration-tokens", responses((status = 200, body = Vec<RegistrationToken>)), security(("bearer" = [])))]
pub async fn token_list(
    _: Admin,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<RegistrationToken>>> {
    let records = state.store.registration_token_list().await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| views::registration_token(r, None))
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/registration-tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn token_delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.registration_token_delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/instances", responses((status = 200, body = Vec<Instance>)), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> ApiResult<Json<Vec<Instance>>> {
    Ok(Json(list_views(&state).await?))
}

/// Every instance with its status and memberships.
pub(crate) async fn list_views(state: &AppState) -> ApiResult<Vec<Instance>> {
    let now = chrono::Utc::now();
    let liveness = state.liveness_judge();
    let mut instances = Vec::new();
    for record in state.store.instance_list().await? {
        let memberships = state.store.instance_memberships(&record.id).await?;
        instances.push(views::instance(record, memberships, &liveness, now));
    }
    Ok(instances)
}

#[utoipa::path(get, path = "/api/v1/instances/{instance}", params(("instance" = String, Path, description = "id or name")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(instance): ApiPath<String>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(show_view(&state, &instance).await?))
}

/// One instance (by id or name) with its status and memberships.
pub(crate) async fn show_view(state: &AppState, id_or_name: &str) -> ApiResult<Instance> {
    let record = state.store.instance_fetch(id_or_name).await?;
    let memberships = state.store.instance_memberships(&record.id).await?;
    let pending = match &record.scaling_group {
        Some(name) => match state.store.scaling_group_held(name).await {
            Ok(held) => held.iter().any(|h| h.instance_id == record.id && !h.joined),
            // Registered before the scaling group was deleted.
            Err(wharf_store::StoreError::NotFound { .. }) => false,
            Err(err) => return Err(err.into()),
        },
        None => false,
    };
    let mut view = views::instance(
        record,
        memberships,
        &state.liveness_judge(),
        chrono::Utc::now(),
    );
    view.scaling_pending = pending;
    Ok(view)
}

#[utoipa::path(delete, path = "/api/v1/instances/{instance}", params(("instance" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(instance): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let record = state.store.instance_fetch(&instance).await?;
    state.store.instance_delete(&record.id).await?;
    state.agent_credentials.remove(&record.credential_hash);
    Ok(StatusCode::NO_CONTENT)
}
