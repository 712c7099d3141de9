//! Bearer-token authentication for `/api/v1/` (API tokens, giving a
//! [`Caller`]) and `/agent/v1/` (agent credentials, giving an [`Agent`]). Only
//! hashes are compared; the presented secret is never logged. A secret the store
//! refused is refused again without asking it, and an address with too many
//! failures is refused before the store is asked (overload.rs).

use crate::error::ApiError;
use crate::ops::{Caller, Role};
use crate::overload::{peer_ip, Refusal, Secret};
use crate::secrets::hash_token;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wharf_store::InstanceRecord;

/// The instance whose agent credential the request carried (shared with the
/// credential cache: every agent request has one).
#[derive(Debug, Clone)]
pub struct Agent(pub Arc<InstanceRecord>);

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer TOKEN'"))?
        .trim();
    if token.is_empty() {
        return Err(ApiError::unauthorized("the bearer token is empty"));
    }
    Ok(token)
}

/// The address the request came from, when the server was given it (a router
/// served without a network, as in handler tests, has none).
pub fn source(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The request's source address as an extractor (`None` without a socket).
pub struct Source(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source(parts)))
    }
}

/// The role a stored token has. Every token is an admin token so far; a role this
/// server does not know gives the weakest.
pub fn role_of(stored: &str) -> Role {
    Role::parse(stored).unwrap_or(Role::Viewer)
}

/// A request with a valid API token: its caller.
impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let ip = peer_ip(parts);
        let budget = &state.guard.failed_auth;
        let token = match bearer(parts) {
            Ok(token) => token,
            Err(err) => {
                budget.record(ip);
                return Err(err);
            }
        };
        let hash = hash_token(token);
        state.guard.before_lookup(Secret::ApiToken, ip, &hash)?;
        match state.store.api_token_by_hash(&hash).await? {
            Some(record) => Ok(Caller::api_token(
                record.id,
                role_of(&record.role),
                source(parts),
            )),
            None => {
                state.guard.refused(Secret::ApiToken, ip, &hash);
                Err(Refusal::Rejected(Secret::ApiToken).into())
            }
        }
    }
}

impl<S> FromRequestParts<S> for Agent
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let ip = peer_ip(parts);
        let budget = &state.guard.failed_auth;
        let hash = match bearer(parts) {
            Ok(token) => hash_token(token),
            Err(err) => {
                budget.record(ip);
                return Err(err);
            }
        };
        if let Some(instance) = state.agent_credentials.get(&hash) {
            return Ok(Agent(instance));
        }
        state
            .guard
            .before_lookup(Secret::AgentCredential, ip, &hash)?;
        match state.store.instance_by_credential(&hash).await? {
            Some(instance) => {
                let instance = Arc::new(instance);
                state.agent_credentials.insert(&hash, instance.clone());
                Ok(Agent(instance))
            }
            None => {
                state.guard.refused(Secret::AgentCredential, ip, &hash);
                Err(Refusal::Rejected(Secret::AgentCredential).into())
            }
        }
    }
}
