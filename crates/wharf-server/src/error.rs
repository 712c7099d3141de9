//! The API's error type and its one rendering: a status and
//! `{"error": {"code", "message", "field"}}`. Handlers return `ApiError`; nothing
//! else writes an error body. The service layer's [`OpError`] becomes one here.

use crate::ops::OpError;
use crate::overload::{Refusal, Secret};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wharf_api::{ErrorBody, ErrorDetail};
use wharf_domain::ValidationError;
use wharf_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds the client should wait before trying again (`Retry-After`), for
    /// answers that say "not now" (503, 429).
    pub retry_after: Option<u32>,
}

/// How long a client is asked to wait after the store could not take its call.
/// Short: such a stall is usually over within a second or two, and agents add
/// their own jitter on top (wharf-agent's backoff.rs).
pub const STORE_RETRY_AFTER_SECS: u32 = 2;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 503: the server cannot take the request now (its store is stalled or
    /// overloaded); nothing was done, and the same request may succeed later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(STORE_RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 429: this client sent too many requests of a kind (e.g. failed sign-ins);
    /// it may try again after `retry_after` seconds.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// A value that breaks a rule; `field` names it as the request spelled it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; see its log",
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        OpError::from(err).into()
    }
}

/// The answer to a secret refused before the store was asked, as the store's
/// refusal of it is answered.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rejected(Secret::ApiToken) => Self::unauthorized("the token is not valid"),
            Refusal::Rejected(Secret::AgentCredential) => {
                Self::unauthorized("the agent credential is not valid (was the instance deleted?)")
            }
            Refusal::Rejected(Secret::RegistrationToken) => Self::new(
                StatusCode::UNAUTHORIZED,
                "registration_refused",
                "the registration token is not valid",
            ),
            Refusal::TooMany { what, retry_after } => {
                let secs = retry_after.as_secs().max(1);
                Self::too_many_requests(
                    format!("too many {what} from this address; try again in {secs} s"),
                    u32::try_from(secs).unwrap_or(u32::MAX),
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        OpError::from(err).into()
    }
}

/// The one mapping of the service layer's errors to statuses and codes.
impl From<OpError> for ApiError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::NotFound { what } => Self::not_found(what),
            OpError::Conflict { kind, message } => {
                Self::new(StatusCode::CONFLICT, kind.code(), message)
            }
            OpError::Invalid { field, message } => Self::invalid(field, message),
            OpError::RegistrationRefused { message } => {
                Self::new(StatusCode::UNAUTHORIZED, "registration_refused", message)
            }
            err @ OpError::Forbidden { .. } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", err.to_string())
            }
            OpError::Unavailable => Self::internal(),
            err @ OpError::TryLater { .. } => Self::unavailable(err.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Conflict, Role};

    #[test]
    fn operation_errors_keep_the_api_statuses_codes_and_messages() {
        let err = ApiError::from(StoreError::NotFound {
            kind: "application",
            name: "shop".into(),
        });
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(
            (err.code, err.message.as_str()),
            ("not_found", "application \"shop\" not found")
        );

        let err = ApiError::from(StoreError::ActiveRelease {
            group: "shop/web".into(),
            release: "r-1".into(),
        });
        assert_eq!(
            (err.status, err.code),
            (StatusCode::CONFLICT, "active_release")
        );

        let err = ApiError::from(StoreError::RegistrationRefused("the token has expired"));
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            (err.code, err.message.as_str()),
            ("registration_refused", "the token has expired")
        );

        let err = ApiError::from(OpError::conflict(
            Conflict::NotPaused,
            "release r-1 is running, not paused",
        ));
        assert_eq!((err.status, err.code), (StatusCode::CONFLICT, "not_paused"));

        let err = ApiError::from(OpError::invalid("ttl_secs", "ttl_secs: too long"));
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "invalid_field")
        );
        assert_eq!(err.field.as_deref(), Some("ttl_secs"));

        let err = ApiError::from(OpError::Forbidden {
            needs: Role::Operator,
        });
        assert_eq!((err.status, err.code), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(err.message.contains("operator"), "{}", err.message);

        let err = ApiError::from(StoreError::Panicked);
        assert_eq!(
            (err.status, err.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );

        // What may pass is "not now", with a time to come back.
        let err = ApiError::from(StoreError::Closed);
        assert_eq!(
            (err.status, err.code, err.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(2))
        );
        let err = ApiError::from(StoreError::Unavailable("too many calls".into()));
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("too many calls"), "{}", err.message);
    }

    #[test]
    fn every_conflict_kind_has_its_own_code() {
        let kinds = [
            Conflict::AlreadyExists,
            Conflict::InUse,
            Conflict::ActiveRelease,
            Conflict::Raced,
            Conflict::EmptyGroup,
            Conflict::NothingToRollBack,
            Conflict::NotPaused,
            Conflict::AlreadyFinished,
        ];
        let codes: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.contains("conflict") && codes.contains("empty_group"));
    }
}
