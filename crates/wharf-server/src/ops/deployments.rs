//! Deployments: immutable revisions of what an application runs.

use super::{Caller, OpError, OpResult, Role};
use crate::state::AppState;
use crate::views;
use std::collections::HashMap;
use wharf_api::{Deployment, DeploymentCreate};
use wharf_domain::deployment::{DeploymentKind, DeploymentSpec, ImageSpec, Timeouts, VerifySpec};
use wharf_store::{DeploymentRecord, RegistryRecord, StoreError};

/// Turns the request into the domain's spec, filling defaults.
fn spec_from(body: DeploymentCreate) -> OpResult<DeploymentSpec> {
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
async fn registry_for(state: &AppState, spec: &DeploymentSpec) -> OpResult<Option<RegistryRecord>> {
    let Some(image) = &spec.image else {
        return Ok(None);
    };
    let registry = match state.store.registry_fetch(&image.registry).await {
        Ok(registry) => registry,
        Err(StoreError::NotFound { .. }) => {
            return Err(OpError::invalid(
                "registry",
                format!("registry: no registry is named {:?}", image.registry),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    if image.private_network && registry.private_endpoint.is_none() {
        return Err(OpError::invalid(
            "private_network",
            format!(
                "private_network: registry {:?} has no private endpoint",
                registry.name
            ),
        ));
    }
    Ok(Some(registry))
}

/// Checks and stores a new deployment of `app`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    app: String,
    body: DeploymentCreate,
) -> OpResult<Deployment> {
    caller.require(Role::Deployer, Some(&app))?;
    let strict = body.strict;
    let spec = spec_from(body)?;
    spec.validate()?;
    let warnings =
        super::script_checks::check(spec.kind, &spec.start_script, &spec.stop_script, strict)
            .await?;
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
    let mut view = views::deployment(record, registry.as_ref());
    view.warnings = warnings;
    Ok(view)
}

/// The deployments of `app` with their registry addresses.
pub async fn list(state: &AppState, caller: &Caller, app: &str) -> OpResult<Vec<Deployment>> {
    caller.require(Role::Viewer, Some(app))?;
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

/// One deployment with its registry address.
pub async fn show(
    state: &AppState,
    caller: &Caller,
    app: &str,
    name: &str,
) -> OpResult<Deployment> {
    caller.require(Role::Viewer, Some(app))?;
    let record = state.store.deployment_fetch(app, name).await?;
    let registry = match &record.image {
        Some(image) => Some(state.store.registry_fetch(&image.registry).await?),
        None => None,
    };
    Ok(views::deployment(record, registry.as_ref()))
}

pub async fn delete(state: &AppState, caller: &Caller, app: &str, name: &str) -> OpResult<()> {
    caller.require(Role::Deployer, Some(app))?;
    state.store.deployment_delete(app, name).await?;
    Ok(())
}
