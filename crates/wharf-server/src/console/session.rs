//! Console sign-in: a server-side session per browser, CSRF tokens, and the
//! extractors every console handler uses.
//!
//! Signing in with an API token (the admin token) creates a session: a random id
//! that the browser keeps in an `HttpOnly; SameSite=Strict; Path=/` cookie. The
//! server keeps, per session, only the SHA-256 of the token it was opened with (so
//! deleting the token ends its sessions) and the session's CSRF token. Every form
//! carries that CSRF token and every POST is checked against it ([`Submitted`]);
//! the sign-in form, which has no session yet, is checked against a short-lived
//! cookie instead (double submit).
//!
//! Sessions live in memory: a restarted server asks people to sign in again.

use crate::auth::{role_of, source};
use crate::ops::Caller;
use crate::secrets::{generate_secret, hash_token};
use crate::state::AppState;
use axum::extract::{Form, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "wharf_session";
pub const LOGIN_COOKIE: &str = "wharf_login";
/// The name of the hidden CSRF field of every form.
pub const CSRF_FIELD: &str = "csrf";

/// A session ends after this long without a request ...
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// ... and at the latest this long after sign-in.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most sessions kept; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token_hash: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Every open console session, keyed by the SHA-256 of its id.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    /// Opens a session for a valid token; returns the session id for the cookie.
    pub fn open(&self, token_hash: String) -> String {
        let id = generate_secret("ws_");
        let now = Instant::now();
        let mut sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            hash_token(&id),
            Session {
                token_hash,
                csrf: generate_secret(""),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The token hash and CSRF token of a live session, marking it used.
    fn touch(&self, id: &str) -> Option<(String, String)> {
        let key = hash_token(id);
        let now = Instant::now();
        let mut sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(&key) {
            Some(session) if alive(session, now) => {
                session.last_seen = now;
                Some((session.token_hash.clone(), session.csrf.clone()))
            }
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        let mut sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(&hash_token(id));
    }
}

fn alive(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < IDLE_TIMEOUT
        && now.duration_since(session.created) < MAX_AGE
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value with the attributes every console cookie has.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict",
        max_age.as_secs()
    );
    HeaderValue::from_str(&text).expect("cookie values are hex")
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str, path: &str) -> HeaderValue {
    set_cookie(name, "", path, Duration::ZERO)
}

/// The session cookie for a new session. The browser may keep it as long as a
/// session can live; the server ends it sooner when it is left idle.
pub fn session_cookie(id: &str) -> HeaderValue {
    set_cookie(SESSION_COOKIE, id, "/", MAX_AGE)
}

/// Compares secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A local path to come back to after sign-in; anything else (another host,
/// `//evil`, a backslash trick) becomes `/`.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control())
                && !path.starts_with("/login") =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A signed-in operator: who it is for the service layer (the session's token),
/// and the session's CSRF token, for the forms of the page.
#[derive(Debug, Clone)]
pub struct Operator {
    pub caller: Caller,
    pub csrf: String,
    pub session_id: String,
}

/// Why a request has no operator: it is sent to the sign-in page.
pub struct SignInFirst {
    next: String,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let target = format!("/login?next={}", encode_query(&self.next));
        Redirect::to(&target).into_response()
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<S> FromRequestParts<S> for Operator
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into())
        } else {
            "/".into()
        };
        let sign_in = || SignInFirst { next: next.clone() }.into_response();
        let Extension(sessions) = Extension::<Sessions>::from_request_parts(parts, &state)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in());
        };
        let Some((token_hash, csrf)) = sessions.touch(id) else {
            return Err(sign_in());
        };
        // The token may have been revoked since sign-in.
        match state.store.api_token_by_hash(&token_hash).await {
            Ok(Some(token)) => Ok(Operator {
                caller: Caller::console(token.id, role_of(&token.role), source(parts)),
                csrf,
                session_id: id.to_owned(),
            }),
            Ok(None) => {
                sessions.close(id);
                Err(sign_in())
            }
            Err(err) => {
                tracing::error!(error = ?err, "store failure while checking a console session");
                Err(super::pages::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server failed; see its log",
                ))
            }
        }
    }
}

/// The fields of a submitted form, in order (a name may repeat).
#[derive(Debug, Clone, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a checkbox named `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A form posted by a signed-in operator whose CSRF token matched. Every console
/// POST except sign-in takes this, so none can skip the check.
pub struct Submitted {
    pub operator: Operator,
    pub form: FormData,
}

impl<S> FromRequest<S> for Submitted
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|rejection| {
                super::pages::error_page(rejection.status(), &rejection.body_text())
            })?;
        let form = FormData(fields);
        if !same_secret(form.get(CSRF_FIELD), &operator.csrf) {
            return Err(forbidden());
        }
        Ok(Submitted { operator, form })
    }
}

/// The answer to a form without the right CSRF token.
pub fn forbidden() -> Response {
    super::pages::error_page(
        StatusCode::FORBIDDEN,
        "this form is out of date or did not come from this console (CSRF check failed); reload the page and try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_paths_stay_local() {
        assert_eq!(local_path(Some("/apps/shop")), "/apps/shop");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil")), "/");
        assert_eq!(local_path(Some("/login")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn sessions_open_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open("hash".into());
        let (hash, csrf) = sessions.touch(&id).unwrap();
        assert_eq!(hash, "hash");
        assert_eq!(csrf.len(), 64);
        sessions.close(&id);
        assert!(sessions.touch(&id).is_none());
        assert!(sessions.touch("nonsense").is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; wharf_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
