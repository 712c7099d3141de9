//! Bearer-token authentication for `/api/v1/` (API tokens, giving a
//! [`Caller`]) and `/agent/v1/` (agent credentials, giving an [`Agent`]). Only
//! hashes are compared; the presented secret is never logged.

use crate::error::ApiError;
use crate::ops::{Caller, Role};
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
        let token = bearer(parts)?;
        match state.store.api_token_by_hash(&hash_token(token)).await? {
            Some(record) => Ok(Caller::api_token(
                record.id,
                role_of(&record.role),
                source(parts),
            )),
            None => Err(ApiError::unauthorized("the token is not valid")),
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
        let hash = hash_token(bearer(parts)?);
        if let Some(instance) = state.agent_credentials.get(&hash) {
            return Ok(Agent(instance));
        }
        match state.store.instance_by_credential(&hash).await? {
            Some(instance) => {
                let instance = Arc::new(instance);
                state.agent_credentials.insert(&hash, instance.clone());
                Ok(Agent(instance))
            }
            None => Err(ApiError::unauthorized(
                "the agent credential is not valid (was the instance deleted?)",
            )),
        }
    }
}
