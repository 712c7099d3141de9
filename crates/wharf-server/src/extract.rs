//! Request extractors whose rejections speak the API's error body, so that a
//! malformed body, a wrong content type or a body over the limit get the same
//! `{"error": ...}` answer as every other mistake.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

/// The largest request body accepted. Deployments carry two scripts of at most
/// 64 KiB each; JSON escaping can grow them, so the limit leaves room.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `axum::Json` with API-shaped rejections.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            _ => (rejection.status(), "invalid_body"),
        };
        let message = match code {
            "unsupported_media_type" => {
                "the body must be JSON with Content-Type: application/json".to_owned()
            }
            "body_too_large" => format!(
                "the body is larger than the limit of {} bytes",
                MAX_BODY_BYTES
            ),
            _ => rejection.body_text(),
        };
        ApiError::new(status, code, message)
    }
}

/// `axum::extract::Path` with API-shaped rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

/// `axum::extract::Query` with API-shaped rejections: a bad query parameter gets
/// the API's error body (its message names the parameter), not plain text.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}
