//! `/api/v1/apps/{app}/deployments`: immutable deployment revisions.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::collections::HashMap;
use wharf_api::{Deployment, DeploymentCreate, ErrorBody};
use wharf_domain::deployment::{DeploymentKind, DeploymentSpec, ImageSpec, Timeouts, VerifySpec};
use wharf_store::{DeploymentRecord, RegistryRecord, StoreError};

/// Turns the request into the domain's spec, filling defaults.
fn spec_from(body: DeploymentCreate) -> ApiResult<DeploymentSpec> {
    let defaults = Timeouts::default();
    let timeouts = body.timeouts.unwrap_or_default();
    Ok(DeploymentSpec {
        name: body.name,
        kind: DeploymentKind::parse(&body.kind)?,
        image: body.image.map(|i| ImageSpec {
            registry: i.registry,
            namespace: i.namespace,
            repository: i.repository,
            tag: i.tag,
            private_network: i.private_network,
        }),
        workdir: body.workdir,
        start_script: body.start_script,
        stop_script: body.stop_script,
        verify: body.verify.map(|v| VerifySpec {
            url: v.url,
            expect_status: v.expect_status.unwrap_or(200),
            expect_body: v.expect_body,
        }),
        timeouts: Timeouts {
            pull_secs: timeouts.pull_secs.unwrap_or(defaults.pull_secs),
            script_secs: timeouts.script_secs.unwrap_or(defaults.script_secs),
            verify_secs: timeouts.verify_secs.unwrap_or(defaults.verify_secs),
        },
    })
}

/// Looks up the registry a spec names, checking the rules that need it.
async fn registry_for(
    state: &AppState,
    spec: &DeploymentSpec,
) -> ApiResult<Option<RegistryRecord>> {
    let Some(image) = &spec.image else {
        return Ok(None);
    };
    let registry = match state.store.registry_fetch(&image.registry).await {
        Ok(registry) => registry,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid(
                "registry",
                format!("registry: no registry is named {:?}", image.registry),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    if image.private_network && registry.private_endpoint.is_none() {
        return Err(ApiError::invalid(
            "private_network",
            format!(
                "private_network: registry {:?} has no private endpoint",
                registry.name
            ),
        ));
    }
    Ok(Some(registry))
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/deployments", params(("app" = String, Path)), request_body = DeploymentCreate,
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_deployment(&state, app, body).await?),
    ))
}

/// Checks and stores a new deployment of `app` (the API and the console).
pub(crate) async fn create_deployment(
    state: &AppState,
    app: String,
    body: DeploymentCreate,
) -> ApiResult<Deployment> {
    let spec = spec_from(body)?;
    spec.validate()?;
    state.store.app_fetch(&app).await?;
    let registry = registry_for(state, &spec).await?;
    let record = DeploymentRecord {
        app,
        name: spec.name,
        kind: spec.kind,
        image: spec.image,
        workdir: spec.workdir,
        start_script: spec.start_script,
        stop_script: spec.stop_script,
        verify: spec.verify,
        timeouts: spec.timeouts,
        created_at: chrono::Utc::now(),
    };
    state.store.deployment_create(&record).await?;
    Ok(views::deployment(record, registry.as_ref()))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/deployments", params(("app" = String, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Vec<Deployment>>> {
    Ok(Json(list_views(&state, &app).await?))
}

/// The deployments of `app` with their registry addresses.
pub(crate) async fn list_views(state: &AppState, app: &str) -> ApiResult<Vec<Deployment>> {
    state.store.app_fetch(app).await?;
    let registries: HashMap<String, RegistryRecord> = state
        .store
        .registry_list()
        .await?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let records = state.store.deployment_list(app).await?;
    Ok(records
        .into_iter()
        .map(|d| {
            let registry = d.image.as_ref().and_then(|i| registries.get(&i.registry));
            views::deployment(d, registry)
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/deployments/{name}", params(("app" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(show_view(&state, &app, &name).await?))
}

/// One deployment with its registry address.
pub(crate) async fn show_view(state: &AppState, app: &str, name: &str) -> ApiResult<Deployment> {
    let record = state.store.deployment_fetch(app, name).await?;
    let registry = match &record.image {
        Some(image) => Some(state.store.registry_fetch(&image.registry).await?),
        None => None,
    };
    Ok(views::deployment(record, registry.as_ref()))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/deployments/{name}", params(("app" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.deployment_delete(&app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
