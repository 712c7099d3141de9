//! Registered instances (hosts): list, show, delete.

use super::{Caller, OpResult, Role};
use crate::state::AppState;
use crate::views;
use wharf_api::Instance;

/// Resolves `id_or_name` to an instance id; not found names the input.
pub async fn resolve(state: &AppState, id_or_name: &str) -> OpResult<String> {
    Ok(state.store.instance_fetch(id_or_name).await?.id)
}

/// Every instance with its status and memberships.
pub async fn list(state: &AppState, caller: &Caller) -> OpResult<Vec<Instance>> {
    caller.require_role(Role::Viewer)?;
    let now = chrono::Utc::now();
    let liveness = state.liveness_judge();
    let mut instances = Vec::new();
    for record in state.store.instance_list().await? {
        let memberships = state.store.instance_memberships(&record.id).await?;
        instances.push(views::instance(record, memberships, &liveness, now));
    }
    Ok(instances)
}

/// One instance (by id or name) with its status and memberships.
pub async fn show(state: &AppState, caller: &Caller, id_or_name: &str) -> OpResult<Instance> {
    caller.require_role(Role::Viewer)?;
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

/// Deletes an instance; its agent's credential stops working at once.
pub async fn delete(state: &AppState, caller: &Caller, id_or_name: &str) -> OpResult<()> {
    caller.require(Role::Operator, None)?;
    let record = state.store.instance_fetch(id_or_name).await?;
    state.store.instance_delete(&record.id).await?;
    state.agent_credentials.remove(&record.credential_hash);
    Ok(())
}
