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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
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
            | StoreError::Postgres(_)
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
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
