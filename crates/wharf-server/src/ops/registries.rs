//! Container registries. The password is sealed before it reaches the store and
//! is never part of an answer.

use super::{Caller, OpError, OpResult, Role};
use crate::state::AppState;
use crate::views;
use wharf_api::{Registry, RegistryCreate, RegistryUpdate};
use wharf_domain::names::validate_name;
use wharf_domain::registry::{validate_credentials, validate_endpoint};
use wharf_store::RegistryRecord;

pub async fn create(state: &AppState, caller: &Caller, body: RegistryCreate) -> OpResult<Registry> {
    caller.require(Role::Admin, None)?;
    validate_name("name", &body.name)?;
    validate_endpoint("endpoint", &body.endpoint)?;
    if let Some(private) = &body.private_endpoint {
        validate_endpoint("private_endpoint", private)?;
    }
    validate_credentials(body.username.as_deref(), body.password.as_deref())?;
    let record = RegistryRecord {
        name: body.name,
        endpoint: body.endpoint,
        private_endpoint: body.private_endpoint,
        username: body.username,
        password_sealed: body.password.as_deref().map(|p| state.secrets.seal(p)),
        insecure: body.insecure,
        created_at: chrono::Utc::now(),
    };
    state.store.registry_create(&record).await?;
    Ok(views::registry(record))
}

pub async fn list(state: &AppState, caller: &Caller) -> OpResult<Vec<Registry>> {
    caller.require_role(Role::Viewer)?;
    let records = state.store.registry_list().await?;
    Ok(records.into_iter().map(views::registry).collect())
}

pub async fn show(state: &AppState, caller: &Caller, name: &str) -> OpResult<Registry> {
    caller.require_role(Role::Viewer)?;
    Ok(views::registry(state.store.registry_fetch(name).await?))
}

pub async fn delete(state: &AppState, caller: &Caller, name: &str) -> OpResult<()> {
    caller.require(Role::Admin, None)?;
    state.store.registry_delete(name).await?;
    Ok(())
}

/// Changes a registry's endpoints, credentials or `insecure` flag: a rotated
/// password, a moved registry. Every release pulls with what is stored at the time
/// of the pull, running ones included (the kept assignments are dropped here).
pub async fn update(
    state: &AppState,
    caller: &Caller,
    name: &str,
    body: RegistryUpdate,
) -> OpResult<Registry> {
    caller.require(Role::Admin, None)?;
    if body == RegistryUpdate::default() {
        return Err(OpError::invalid(
            "body",
            "nothing to update: give endpoint, private_endpoint, username, password or insecure",
        ));
    }
    let mut record = state.store.registry_fetch(name).await?;
    if let Some(endpoint) = body.endpoint {
        validate_endpoint("endpoint", &endpoint)?;
        record.endpoint = endpoint;
    }
    match body.private_endpoint.as_deref() {
        Some("") => {
            if let Some(user) = private_network_user(state, name).await? {
                return Err(OpError::invalid(
                    "private_endpoint",
                    format!(
                        "private_endpoint: deployment {user} pulls through it \
                         (private_network); it cannot be removed"
                    ),
                ));
            }
            record.private_endpoint = None;
        }
        Some(private) => {
            validate_endpoint("private_endpoint", private)?;
            record.private_endpoint = Some(private.to_owned());
        }
        None => {}
    }
    match (body.username, body.password) {
        (None, None) => {}
        // A password alone: rotated, for the username the registry has.
        (None, Some(password)) => {
            let username = record.username.clone().ok_or_else(|| {
                OpError::invalid(
                    "username",
                    "username: the registry has none; give one with the password",
                )
            })?;
            validate_credentials(Some(&username), Some(&password))?;
            record.password_sealed = Some(state.secrets.seal(&password));
        }
        (Some(username), password) => {
            validate_credentials(Some(&username), password.as_deref())?;
            record.username = Some(username);
            record.password_sealed = password.as_deref().map(|p| state.secrets.seal(p));
        }
    }
    if let Some(insecure) = body.insecure {
        record.insecure = insecure;
    }
    state.store.registry_update(&record).await?;
    // The work kept for running releases holds the old endpoint and credentials.
    state.assignments.clear();
    tracing::info!(registry = %name, by = %caller, "registry updated");
    Ok(views::registry(record))
}

/// A deployment (`APP/NAME`) that pulls through the registry's private endpoint.
async fn private_network_user(state: &AppState, registry: &str) -> OpResult<Option<String>> {
    for app in state.store.app_list().await? {
        for deployment in state.store.deployment_list(&app.name).await? {
            if deployment
                .image
                .as_ref()
                .is_some_and(|image| image.registry == registry && image.private_network)
            {
                return Ok(Some(format!("{}/{}", app.name, deployment.name)));
            }
        }
    }
    Ok(None)
}
