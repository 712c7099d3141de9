//! Agents joining and leaving: registration with a registration token (into a
//! scaling group when the agent names one) and an agent's own deregistration.
//! Heartbeats and the protocol check stay with the agent endpoints
//! (`api/agents.rs`); work and step reports are `work.rs`.

use super::{Caller, OpError, OpResult, Role};
use crate::secrets::{generate_secret, hash_token, random_id_bytes, AGENT_CREDENTIAL_PREFIX};
use crate::state::AppState;
use wharf_api::agent::{AgentRegister, AgentRegistered};
use wharf_domain::ids::InstanceId;
use wharf_domain::names::{validate_instance_name, validate_label, validate_name};
use wharf_store::{InstanceRecord, StoreError};

/// Checks a short text field of an agent's report: not empty, at most `max`
/// bytes, no control characters.
pub fn text_field(field: &str, value: &str, max: usize) -> OpResult<()> {
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
        return Err(OpError::invalid(
            field,
            format!("{field}: must be 1 to {max} characters of text"),
        ));
    }
    Ok(())
}

fn validate_register(body: &AgentRegister) -> OpResult<()> {
    text_field("hostname", &body.hostname, 253)?;
    let name = body.name.as_deref().unwrap_or(&body.hostname);
    validate_instance_name(name)?;
    if body.os != "linux" {
        return Err(OpError::invalid(
            "os",
            format!(
                "os: Wharf agents run on Linux only, this one says {:?}",
                body.os
            ),
        ));
    }
    text_field("arch", &body.arch, 32)?;
    text_field("agent_version", &body.agent_version, 64)?;
    if body.labels.len() > 64 {
        return Err(OpError::invalid("labels", "labels: at most 64 labels"));
    }
    for (key, value) in &body.labels {
        validate_label(key, value)?;
    }
    if let Some(group) = &body.scaling_group {
        validate_name("scaling_group", group)?;
    }
    Ok(())
}

/// Registers a host: checks what the agent says about it, and stores the instance
/// if the registration token in the body is valid (the store checks and uses it
/// in the same transaction). `address` is where the request came from. The
/// answer is the only place the new credential appears.
pub async fn register(
    state: &AppState,
    caller: &Caller,
    body: AgentRegister,
    address: String,
) -> OpResult<AgentRegistered> {
    caller.require_registration()?;
    validate_register(&body)?;
    let credential = generate_secret(AGENT_CREDENTIAL_PREFIX);
    let now = chrono::Utc::now();
    let record = InstanceRecord {
        id: InstanceId::from_random(random_id_bytes()).to_string(),
        name: body.name.unwrap_or_else(|| body.hostname.clone()),
        hostname: body.hostname,
        address,
        os: body.os,
        arch: body.arch,
        agent_version: body.agent_version,
        labels: body.labels,
        credential_hash: hash_token(&credential),
        scaling_group: body.scaling_group,
        registered_at: now,
        last_heartbeat_at: Some(now),
        docker_version: None,
        docker_error: None,
    };
    let token_hash = hash_token(&body.registration_token);
    if record.scaling_group.is_some() {
        let join = state
            .store
            .instance_register_scaling(&token_hash, &record, now)
            .await
            .map_err(|err| match err {
                StoreError::NotFound {
                    kind: "scaling group",
                    name,
                } => OpError::invalid(
                    "scaling_group",
                    format!("scaling_group: no scaling group is named {name:?}"),
                ),
                other => other.into(),
            })?;
        tracing::info!(instance = %record.id, name = %record.name, scaling_group = ?record.scaling_group, ?join, "instance registered");
    } else {
        state
            .store
            .instance_register(&token_hash, &record, now)
            .await?;
        tracing::info!(instance = %record.id, name = %record.name, "instance registered");
    }
    Ok(AgentRegistered {
        instance_id: record.id,
        name: record.name,
        credential,
        heartbeat_interval_secs: state.liveness.heartbeat_interval.as_secs().max(1),
    })
}

/// An agent leaving for good: its instance is deleted as by `wharf instance
/// delete`, leaving its groups and, for a scaling group, recording the `leave`
/// activity. `instance` is the caller's own.
pub async fn deregister(
    state: &AppState,
    caller: &Caller,
    instance: &InstanceRecord,
) -> OpResult<()> {
    // Only an instance's own agent deregisters it.
    if caller.instance_id() != Some(instance.id.as_str()) {
        return Err(OpError::Forbidden { needs: Role::Admin });
    }
    state.store.instance_delete(&instance.id).await?;
    state.agent_credentials.remove(&instance.credential_hash);
    tracing::info!(instance = %instance.id, name = %instance.name, "instance deregistered itself");
    Ok(())
}
