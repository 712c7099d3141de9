//! `/agent/v1/`: the endpoints agents call. Registration is authenticated by a
//! registration token in the body; everything after it by the agent's own
//! credential. Registration and deregistration are operations (`ops::agents`);
//! the protocol check and heartbeats (written through the group commit) are here.

use crate::auth::Agent;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ops::agents::text_field;
use crate::ops::{self, Caller, OpError};
use crate::overload::{ClientIp, Secret};
use crate::secrets::hash_token;
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

/// The address of a request as `PeerAddr` gives it, when it is one.
fn source(address: &str) -> Option<std::net::IpAddr> {
    address.parse().ok()
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
    // A token refused before is refused again without a write, and an address
    // that keeps presenting refused tokens is stopped before the store.
    let token_hash = hash_token(&body.registration_token);
    let secret = Secret::RegistrationToken;
    state.guard.before_lookup(secret, ip, &token_hash)?;
    let caller = Caller::registering(source(&address));
    let registered = ops::agents::register(&state, &caller, body, address)
        .await
        .inspect_err(|err| {
            if matches!(err, OpError::RegistrationRefused { .. }) {
                state.guard.refused(secret, ip, &token_hash);
            }
        })?;
    Ok((StatusCode::CREATED, Json(registered)))
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
        Err(failed) => return Err(OpError::from(failed).into()),
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
    PeerAddr(address): PeerAddr,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    check_protocol(&headers)?;
    let caller = Caller::agent(instance.id.clone(), source(&address));
    ops::agents::deregister(&state, &caller, &instance).await?;
    Ok(StatusCode::NO_CONTENT)
}
