//! Bearer-token authentication for `/api/v1/` (API tokens) and `/agent/v1/` (agent
//! credentials). Only hashes are compared; the presented secret is never logged.

use crate::error::ApiError;
use crate::secrets::hash_token;
use crate::state::AppState;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;
use wharf_store::InstanceRecord;

/// Proof that the request carried a valid API token.
#[derive(Debug, Clone)]
pub struct Admin {
    #[allow(dead_code)]
    pub token_id: String,
}

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

impl<S> FromRequestParts<S> for Admin
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer(parts)?;
        match state.store.api_token_by_hash(&hash_token(token)).await? {
            Some(record) => Ok(Admin {
                token_id: record.id,
            }),
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
