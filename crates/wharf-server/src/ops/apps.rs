//! Applications: create, list, show, delete.

use super::{Caller, OpResult, Role};
use crate::state::AppState;
use crate::views;
use wharf_api::{App, AppCreate};
use wharf_domain::names::{validate_description, validate_name};
use wharf_store::AppRecord;

/// An application with the names of its groups and deployments.
pub async fn view(state: &AppState, record: AppRecord) -> OpResult<App> {
    let groups = state.store.group_list(&record.name).await?;
    let deployments = state.store.deployment_list(&record.name).await?;
    Ok(views::app(
        record,
        groups.into_iter().map(|g| g.name).collect(),
        deployments.into_iter().map(|d| d.name).collect(),
    ))
}

/// Checks and stores a new application.
pub async fn create(state: &AppState, caller: &Caller, body: AppCreate) -> OpResult<App> {
    caller.require(Role::Operator, Some(&body.name))?;
    validate_name("name", &body.name)?;
    let description = body.description.unwrap_or_default();
    validate_description(&description)?;
    let record = AppRecord {
        name: body.name,
        description,
        created_at: chrono::Utc::now(),
    };
    state.store.app_create(&record).await?;
    view(state, record).await
}

/// Every application the caller may see.
pub async fn list(state: &AppState, caller: &Caller) -> OpResult<Vec<App>> {
    caller.require_role(Role::Viewer)?;
    let mut apps = Vec::new();
    for record in state.store.app_list().await? {
        if caller.may_touch(Some(&record.name)) {
            apps.push(view(state, record).await?);
        }
    }
    Ok(apps)
}

/// One application.
pub async fn show(state: &AppState, caller: &Caller, app: &str) -> OpResult<App> {
    caller.require(Role::Viewer, Some(app))?;
    let record = state.store.app_fetch(app).await?;
    view(state, record).await
}

/// Deletes an application (the store refuses while it has groups or deployments).
pub async fn delete(state: &AppState, caller: &Caller, app: &str) -> OpResult<()> {
    caller.require(Role::Operator, Some(app))?;
    state.store.app_delete(app).await?;
    Ok(())
}
