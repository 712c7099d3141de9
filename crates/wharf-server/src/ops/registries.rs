//! Container registries. The password is sealed before it reaches the store and
//! is never part of an answer.

use super::{Caller, OpResult, Role};
use crate::state::AppState;
use crate::views;
use wharf_api::{Registry, RegistryCreate};
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
