//! The error every client call returns, with enough context in each variant for a
//! caller to tell an answer of the server apart from a server it could not reach.

use std::time::Duration;

/// Why a call to the Wharf API did not give the answer asked for.
///
/// Following the workspace's error habit, a variant's `Display` describes only its
/// own layer; the transport error underneath, when there is one, is its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to the client cannot be used.
    #[error("invalid server URL: {reason}")]
    InvalidUrl { reason: String },

    /// The token contains characters that cannot be sent in an HTTP header.
    #[error("the API token contains characters that cannot be sent in an HTTP header")]
    InvalidToken,

    /// An argument that becomes part of a request path cannot name a resource, for
    /// example an empty string or `..`, which would change the route.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// No connection could be made: refused, unresolvable host, no route.
    #[error("cannot reach the Wharf server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake failed because the server's certificate is not trusted
    /// (not signed by the CA given, expired, for another name).
    #[error("refusing the Wharf server at {url}: {reason}")]
    Untrusted { url: String, reason: String },

    /// The server did not answer within the client's timeout.
    #[error("the Wharf server at {url} did not answer within {timeout:?}")]
    Timeout {
        url: String,
        timeout: Duration,
        #[source]
        source: reqwest::Error,
    },

    /// The request failed after a connection was made, for example a reset
    /// connection or a broken response.
    #[error("request to {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server refused the request with Wharf's error body.
    #[error("{message}{}", field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api {
        status: u16,
        /// A stable machine-readable code such as `not_found` or `invalid_field`.
        code: String,
        message: String,
        /// The request field the error is about, when there is one.
        field: Option<String>,
    },

    /// The server answered with an error status but without Wharf's error body:
    /// typically a proxy in front of it, or something that is not a Wharf server.
    #[error("unexpected answer from {url}: HTTP {status} without a Wharf error body")]
    UnexpectedStatus {
        url: String,
        status: u16,
        /// The beginning of the body, for debugging; it comes from the network and
        /// must be escaped before it is shown on a terminal.
        body: String,
    },

    /// The server answered with success but the body is not what the API promises.
    #[error("cannot decode the answer from {url}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of the server's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (`not_found`, `already_exists`, ...), when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the server said that the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) && matches!(self.code(), None | Some("not_found"))
    }

    /// Whether the request never got an answer from the server, so that retrying
    /// later may help (what an agent loop wants to know).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Transport { .. }
        ) || matches!(self.status(), Some(502..=504))
    }
}
