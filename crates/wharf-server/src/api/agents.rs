//! `/agent/v1/`: the endpoints agents call. Registration is authenticated by a
//! registration token in the body; everything after it by the agent's own
//! credential.

use crate::auth::Agent;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::overload::{ClientIp, Secret};
use crate::secrets::{generate_secret, hash_token, random_id_bytes, AGENT_CREDENTIAL_PREFIX};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use std::net::SocketAddr;
use std::sync::Arc;
use wharf_api::agent::{
    AgentHeartbeat, AgentHeartbeatAck, AgentRegister, AgentRegistered, DockerStatus,
    AGENT_PROTOCOL_VERSION, OLDEST_AGENT_PROTOCOL_VERSION, PROTOCOL_HEADER,
};
use wharf_api::ErrorBody;
use wharf_domain::ids::InstanceId;
use wharf_domain::names::{validate_instance_name, validate_label, validate_name};
use wharf_store::{HeartbeatRecord, InstanceRecord, StoreError};

/// The address the request came from, or `unknown` where there is no socket (as in
/// handler tests).
pub struct PeerAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
        ))
    }
}

/// Refuses agents that do not say they speak one of our protocol versions.
fn check_protocol(headers: &HeaderMap) -> ApiResult<()> {
    let version = headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok());
    match version.map(str::parse::<u32>) {
        Some(Ok(v)) if (OLDEST_AGENT_PROTOCOL_VERSION..=AGENT_PROTOCOL_VERSION).contains(&v) => {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_protocol",
            format!(
                "this server speaks agent protocols {OLDEST_AGENT_PROTOCOL_VERSION} to {AGENT_PROTOCOL_VERSION} (header {PROTOCOL_HEADER}); upgrade or downgrade the agent to match"
            ),
        )),
    }
}

fn text_field(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: must be 1 to {max} characters of text"),
        ));
    }
    Ok(())
}

fn validate_register(body: &AgentRegister) -> ApiResult<()> {
    text_field("hostname", &body.hostname, 253)?;
    let name = body.name.as_deref().unwrap_or(&body.hostname);
    validate_instance_name(name)?;
    if body.os != "linux" {
        return Err(ApiError::invalid(
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
        return Err(ApiError::invalid("labels", "labels: at most 64 labels"));
    }
    for (key, value) in &body.labels {
        validate_label(key, value)?;
    }
    if let Some(group) = &body.scaling_group {
        validate_name("scaling_group", group)?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/agent/v1/register", request_body = AgentRegister,
    responses((status = 201, body = AgentRegistered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    PeerAddr(address): PeerAddr,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AgentRegister>,
) -> ApiResult<(StatusCode, Json<AgentRegistered>)> {
    check_protocol(&headers)?;
    validate_register(&body)?;
    // A token refused before is refused again without a write, and an address
    // that keeps presenting refused tokens is stopped before the store.
    let token_hash = hash_token(&body.registration_token);
    let secret = Secret::RegistrationToken;
    state.guard.before_lookup(secret, ip, &token_hash, || {
        StoreError::RegistrationRefused("the registration token is not valid").into()
    })?;
    let refused = |err: &StoreError| {
        if matches!(err, StoreError::RegistrationRefused(_)) {
            state.guard.refused(secret, ip, &token_hash);
        }
    };
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
    if record.scaling_group.is_some() {
        let join = state
            .store
            .instance_register_scaling(&token_hash, &record, now)
            .await
            .inspect_err(refused)
            .map_err(|err| match err {
                StoreError::NotFound {
                    kind: "scaling group",
                    name,
                } => ApiError::invalid(
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
            .await
            .inspect_err(refused)?;
        tracing::info!(instance = %record.id, name = %record.name, "instance registered");
    }
    Ok((
        StatusCode::CREATED,
        Json(AgentRegistered {
            instance_id: record.id,
            name: record.name,
            credential,
            heartbeat_interval_secs: state.liveness.heartbeat_interval.as_secs().max(1),
        }),
    ))
}

/// Stores what a heartbeat says about the host's Docker Engine, only when it
/// differs from what is stored (the instance was read by the credential check),
/// so that heartbeats of an unchanged fleet cost no extra write.
async fn record_docker(
    state: &AppState,
    instance: &InstanceRecord,
    docker: &DockerStatus,
) -> ApiResult<()> {
    if let Some(version) = &docker.version {
        text_field("docker.version", version, 64)?;
    }
    // An error is the agent's own words: kept bounded and on one line.
    let error: Option<String> = docker.error.as_ref().map(|e| {
        e.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_DOCKER_ERROR_CHARS)
            .collect()
    });
    let version = if error.is_some() {
        None
    } else {
        docker.version.clone()
    };
    if instance.docker_version == version && instance.docker_error == error {
        return Ok(());
    }
    match state
        .store
        .instance_set_docker(&instance.id, version.as_deref(), error.as_deref())
        .await
    {
        Ok(()) => {
            // The credential cache holds what the next heartbeat compares with.
            let mut updated = instance.clone();
            updated.docker_version = version;
            updated.docker_error = error;
            let hash = updated.credential_hash.clone();
            state.agent_credentials.update(&hash, Arc::new(updated));
            Ok(())
        }
        // Deleted meanwhile: the heartbeat itself was answered already.
        Err(StoreError::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The longest Docker error kept for an instance.
const MAX_DOCKER_ERROR_CHARS: usize = 512;

#[utoipa::path(post, path = "/agent/v1/heartbeat", request_body = AgentHeartbeat,
    responses((status = 200, body = AgentHeartbeatAck), (status = 401, body = ErrorBody)))]
pub async fn heartbeat(
    Agent(instance): Agent,
    State(state): State<AppState>,
    PeerAddr(address): PeerAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AgentHeartbeat>,
) -> ApiResult<Json<AgentHeartbeatAck>> {
    check_protocol(&headers)?;
    text_field("agent_version", &body.agent_version, 64)?;
    // Heartbeats that arrive together are written in one transaction (see
    // `group_commit.rs`); this answers once this one is stored.
    let beat = HeartbeatRecord {
        id: instance.id.clone(),
        at: chrono::Utc::now(),
        agent_version: body.agent_version,
        address,
    };
    match state.heartbeats.write(state.store.clone(), beat).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(StoreError::NotFound {
                kind: "instance",
                name: instance.id.clone(),
            }
            .into())
        }
        Err(failed) => return Err(failed.into()),
    }
    if let Some(docker) = &body.docker {
        record_docker(&state, &instance, docker).await?;
    }
    Ok(Json(AgentHeartbeatAck {
        instance_id: instance.id.clone(),
        heartbeat_interval_secs: state.liveness.heartbeat_interval.as_secs().max(1),
    }))
}

#[utoipa::path(post, path = "/agent/v1/deregister",
    responses((status = 204), (status = 401, body = ErrorBody)))]
/// An agent leaving for good (`wharf agent --deregister` on shutdown): the
/// instance is deleted as by `wharf instance delete`, leaving its groups and, for
/// a scaling group, recording the `leave` activity.
pub async fn deregister(
    Agent(instance): Agent,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    check_protocol(&headers)?;
    state.store.instance_delete(&instance.id).await?;
    state.agent_credentials.remove(&instance.credential_hash);
    tracing::info!(instance = %instance.id, name = %instance.name, "instance deregistered itself");
    Ok(StatusCode::NO_CONTENT)
}
