//! The API's error type and its one rendering: a status and
//! `{"error": {"code", "message", "field"}}`. Handlers return `ApiError`; nothing
//! else writes an error body.

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
        let message = format!("{}: {}", err.field, err.message);
        Self::invalid(err.field, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let Some(why) = err.transient_reason() {
            tracing::warn!(error = ?err, "the store cannot take a call now");
            return Self::unavailable(format!(
                "the server cannot take this request now: {why}; try again shortly"
            ));
        }
        match &err {
            StoreError::NotFound { .. } => Self::not_found(err.to_string()),
            StoreError::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, "already_exists", err.to_string())
            }
            StoreError::InUse { .. } => Self::new(StatusCode::CONFLICT, "in_use", err.to_string()),
            StoreError::ActiveRelease { .. } => {
                Self::new(StatusCode::CONFLICT, "active_release", err.to_string())
            }
            StoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            StoreError::RegistrationRefused(why) => {
                Self::new(StatusCode::UNAUTHORIZED, "registration_refused", *why)
            }
            StoreError::Backend(_)
            | StoreError::Unavailable(_)
            | StoreError::Corrupt(_)
            | StoreError::Closed
            | StoreError::Panicked => {
                tracing::error!(error = ?err, "store failure");
                Self::internal()
            }
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
