//! Bearer-token authentication for `/api/v1/` (API tokens) and `/agent/v1/` (agent
//! credentials). Only hashes are compared; the presented secret is never logged.
//! A secret the store refused is refused again without asking it, and an address
//! with too many failures is refused before the store is asked (overload.rs).

use crate::error::ApiError;
use crate::overload::{peer_ip, Secret};
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
        let refusal = || ApiError::unauthorized("the token is not valid");
        state
            .guard
            .before_lookup(Secret::ApiToken, ip, &hash, refusal)?;
        match state.store.api_token_by_hash(&hash).await? {
            Some(record) => Ok(Admin {
                token_id: record.id,
            }),
            None => {
                state.guard.refused(Secret::ApiToken, ip, &hash);
                Err(refusal())
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
        let refusal = || {
            ApiError::unauthorized("the agent credential is not valid (was the instance deleted?)")
        };
        state
            .guard
            .before_lookup(Secret::AgentCredential, ip, &hash, refusal)?;
        match state.store.instance_by_credential(&hash).await? {
            Some(instance) => {
                let instance = Arc::new(instance);
                state.agent_credentials.insert(&hash, instance.clone());
                Ok(Agent(instance))
            }
            None => {
                state.guard.refused(Secret::AgentCredential, ip, &hash);
                Err(refusal())
            }
        }
    }
}
