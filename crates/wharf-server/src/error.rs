//! The API's error type and its one rendering: a status and
//! `{"error": {"code", "message", "field"}}`. Handlers return `ApiError`; nothing
//! else writes an error body. The service layer's [`OpError`] becomes one here.

use crate::ops::OpError;
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
        OpError::from(err).into()
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

        let err = ApiError::from(StoreError::Closed);
        assert_eq!(
            (err.status, err.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
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
