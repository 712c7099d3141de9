//! Registration tokens: what an agent presents to join.

use super::{Caller, OpError, OpResult, Role};
use crate::secrets::{generate_id, generate_secret, hash_token, REGISTRATION_TOKEN_PREFIX};
use crate::state::AppState;
use crate::views;
use wharf_api::{RegistrationToken, RegistrationTokenCreate};
use wharf_store::RegistrationTokenRecord;

/// A registration token lives one day unless asked otherwise.
const DEFAULT_TTL_SECS: u64 = 24 * 3600;
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
const MAX_USES: u32 = 100_000;

/// Checks the request and stores a new registration token; the answer is the only
/// place its secret appears.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: RegistrationTokenCreate,
) -> OpResult<RegistrationToken> {
    caller.require(Role::Operator, None)?;
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(OpError::invalid(
            "ttl_secs",
            format!("ttl_secs: must be from 1 second to {MAX_TTL_SECS} seconds (365 days)"),
        ));
    }
    let uses = body.uses.unwrap_or(1);
    if uses == 0 || uses > MAX_USES {
        return Err(OpError::invalid(
            "uses",
            format!("uses: must be from 1 to {MAX_USES}"),
        ));
    }
    let token = generate_secret(REGISTRATION_TOKEN_PREFIX);
    let now = chrono::Utc::now();
    let record = RegistrationTokenRecord {
        id: generate_id("rt"),
        hash: hash_token(&token),
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl as i64),
        uses,
        uses_left: uses,
    };
    state.store.registration_token_create(&record).await?;
    Ok(views::registration_token(record, Some(token)))
}

/// Every registration token, never with its secret.
pub async fn list(state: &AppState, caller: &Caller) -> OpResult<Vec<RegistrationToken>> {
    caller.require_role(Role::Viewer)?;
    let records = state.store.registration_token_list().await?;
    Ok(records
        .into_iter()
        .map(|r| views::registration_token(r, None))
        .collect())
}

pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> OpResult<()> {
    caller.require(Role::Operator, None)?;
    state.store.registration_token_delete(id).await?;
    Ok(())
}
