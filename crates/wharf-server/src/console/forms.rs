//! The console's POST handlers. Each turns its form into the API's request type
//! and calls the operation (`ops`) the API handler calls, as the session's
//! caller, so the rules and the messages are the API's. A refused form renders its page again with what was typed and the
//! error (with the API's status); an accepted one redirects (303) to what it made.

use super::pages::{self, fail, origin, FormState, NewToken, PageResult};
use super::session::{
    self, clear_cookie, cookie, same_secret, session_cookie, FormData, Sessions, Submitted,
    LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::error::ApiError;
use crate::ops;
use crate::overload::{ClientIp, Refusal, Secret};
use crate::secrets::hash_token;
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use std::str::FromStr;
use wharf_api::{
    AppCreate, DeploymentCreate, GroupCreate, GroupInstances, ImageFields, RegistrationTokenCreate,
    ReleaseCreate, TimeoutsInput, VerifyCheck,
};

fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// An optional whole number from a form field; empty means "not given".
fn number<T: FromStr>(form: &FormData, name: &str) -> Result<Option<T>, ApiError> {
    let text = form.get(name).trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::invalid(
            name,
            format!("{name}: {text:?} is not a whole number in range"),
        )
    })
}

/// Text from a form field, or `None` when it is empty.
fn text(form: &FormData, name: &str) -> Option<String> {
    let value = form.get(name);
    (!value.is_empty()).then(|| value.to_owned())
}

/// Browsers send the lines of a textarea ended by CRLF; scripts run with bash want
/// LF.
fn script(form: &FormData, name: &str) -> String {
    form.get(name).replace("\r\n", "\n")
}

// ---------------------------------------------------------------- sign-in

/// Signs in with an API token: opens a session and sets its cookie.
pub async fn login(
    State(state): State<AppState>,
    Extension(sessions): Extension<Sessions>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let form = FormData(fields);
    let next = session::local_path(Some(form.get("next")));
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(form.get(session::CSRF_FIELD), expected) {
        return session::forbidden();
    }
    let token = form.get("token").trim();
    if token.is_empty() {
        return pages::login_page(StatusCode::UNAUTHORIZED, next, Some("enter a token".into()));
    }
    let hash = hash_token(token);
    let not_valid = || {
        pages::login_page(
            StatusCode::UNAUTHORIZED,
            next.clone(),
            Some("the token is not valid".into()),
        )
    };
    let secret = Secret::ApiToken;
    match state.guard.before_lookup(secret, ip, &hash) {
        Ok(()) => {}
        Err(Refusal::Rejected(_)) => return not_valid(),
        Err(refusal) => return fail(crate::error::ApiError::from(refusal)),
    }
    match state.store.api_token_by_hash(&hash).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            state.guard.refused(secret, ip, &hash);
            return not_valid();
        }
        Err(err) => return fail(err),
    }
    let id = sessions.open(hash);
    tracing::info!("console sign-in");
    let mut response = see(&next);
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session_cookie(&id));
    headers.append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE, "/login"));
    response
}

/// Ends the session and clears its cookie.
pub async fn logout(Extension(sessions): Extension<Sessions>, submitted: Submitted) -> Response {
    sessions.close(&submitted.operator.session_id);
    let mut response = see("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, "/"));
    response
}

// ---------------------------------------------------------------- resources

pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let body = number(&form, "ttl_secs").and_then(|ttl_secs| {
        Ok(RegistrationTokenCreate {
            ttl_secs,
            uses: number(&form, "uses")?,
        })
    });
    let created = match body {
        Ok(body) => ops::tokens::create(&state, &operator.caller, body)
            .await
            .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    match created {
        Ok(token) => {
            let secret = token.token.unwrap_or_default();
            let new = NewToken {
                command: format!(
                    "wharf agent --server {} --registration-token {secret}",
                    origin(&headers)
                ),
                id: token.id,
                token: secret,
                expires: token.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                uses: token.uses,
            };
            let form = FormState {
                values: form,
                ..FormState::default()
            };
            pages::instances_page(&state, &operator, StatusCode::OK, form, Some(new)).await
        }
        Err(err) => {
            pages::instances_page(
                &state,
                &operator,
                err.status,
                FormState::refused(form, &err),
                None,
            )
            .await
        }
    }
}

pub async fn create_app(
    State(state): State<AppState>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let body = AppCreate {
        name: form.get("name").trim().to_owned(),
        description: text(&form, "description"),
    };
    match ops::apps::create(&state, &operator.caller, body)
        .await
        .map_err(ApiError::from)
    {
        Ok(app) => Ok(see(&format!("/apps/{}", app.name))),
        Err(err) => {
            pages::apps_page(
                &state,
                &operator,
                err.status,
                FormState::refused(form, &err),
            )
            .await
        }
    }
}

pub async fn create_group(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let body = GroupCreate {
        name: form.get("name").trim().to_owned(),
    };
    match ops::groups::create(&state, &operator.caller, app.clone(), body)
        .await
        .map_err(ApiError::from)
    {
        Ok(group) => Ok(see(&format!("/apps/{}/groups/{}", group.app, group.name))),
        Err(err) if err.status == StatusCode::NOT_FOUND && err.field.is_none() => Err(fail(err)),
        Err(err) => {
            pages::app_page(
                &state,
                &operator,
                &app,
                err.status,
                FormState::refused(form, &err),
            )
            .await
        }
    }
}

/// The instances a form names: ticked boxes and ids or names typed in a text field.
fn named_instances(form: &FormData) -> GroupInstances {
    let mut instances = form.all("instances");
    instances.extend(
        form.get("instances_text")
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    GroupInstances { instances }
}

pub async fn add_members(
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let body = named_instances(&form);
    match ops::groups::add_members(&state, &operator.caller, &app, &group, &body)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => Ok(see(&format!("/apps/{app}/groups/{group}"))),
        Err(err) if err.field.is_none() => Err(fail(err)),
        Err(err) => {
            pages::group_page(
                &state,
                &operator,
                &app,
                &group,
                err.status,
                FormState::refused(form, &err),
                None,
            )
            .await
        }
    }
}

pub async fn remove_members(
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let body = named_instances(&form);
    match ops::groups::remove_members(&state, &operator.caller, &app, &group, &body)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => Ok(see(&format!("/apps/{app}/groups/{group}"))),
        Err(err) if err.status == StatusCode::NOT_FOUND && err.field.is_none() => Err(fail(err)),
        Err(err) => {
            pages::group_page(
                &state,
                &operator,
                &app,
                &group,
                err.status,
                FormState::default(),
                Some(err.message),
            )
            .await
        }
    }
}

/// The API's deployment request from the deployment form.
fn deployment_body(form: &FormData) -> Result<DeploymentCreate, ApiError> {
    let kind = form.get("type").to_owned();
    let image_given = ["registry", "namespace", "repository", "tag"]
        .iter()
        .any(|f| !form.get(f).is_empty());
    // The form shows the image fields for both types; they belong to docker-image.
    let image =
        (kind == "docker-image" || (kind != "command" && image_given)).then(|| ImageFields {
            registry: form.get("registry").trim().to_owned(),
            namespace: form.get("namespace").trim().to_owned(),
            repository: form.get("repository").trim().to_owned(),
            tag: form.get("tag").trim().to_owned(),
            private_network: form.checked("private_network"),
        });
    let verify_given = ["verify.url", "verify.expect_status", "verify.expect_body"]
        .iter()
        .any(|f| !form.get(f).is_empty());
    let verify = if verify_given {
        Some(VerifyCheck {
            url: form.get("verify.url").trim().to_owned(),
            expect_status: number(form, "verify.expect_status")?,
            expect_body: text(form, "verify.expect_body"),
        })
    } else {
        None
    };
    Ok(DeploymentCreate {
        name: form.get("name").trim().to_owned(),
        kind,
        image,
        workdir: form.get("workdir").trim().to_owned(),
        start_script: script(form, "start_script"),
        stop_script: script(form, "stop_script"),
        verify,
        timeouts: Some(TimeoutsInput {
            pull_secs: number(form, "timeouts.pull")?,
            script_secs: number(form, "timeouts.script")?,
            verify_secs: number(form, "timeouts.verify")?,
        }),
        strict: form.checked("strict"),
    })
}

pub async fn create_deployment(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let created = match deployment_body(&form) {
        Ok(body) => ops::deployments::create(&state, &operator.caller, app.clone(), body)
            .await
            .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    match created {
        Ok(d) => Ok(see(&format!("/apps/{}/deployments/{}", d.app, d.name))),
        Err(err) if err.status == StatusCode::NOT_FOUND && err.field.is_none() => Err(fail(err)),
        Err(err) => {
            pages::deployment_new_page(
                &state,
                &operator,
                &app,
                err.status,
                FormState::refused(form, &err),
            )
            .await
        }
    }
}

/// The API's release request from the release form.
fn release_body(form: &FormData) -> Result<ReleaseCreate, ApiError> {
    Ok(ReleaseCreate {
        deployment: form.get("deployment").to_owned(),
        batches: number(form, "batches")?,
        pause: text(form, "pause"),
        batch_interval_secs: number(form, "batch_interval_secs")?,
        max_failures: number(form, "max_failures")?,
        rollback_on_failure: form.checked("rollback_on_failure"),
    })
}

pub async fn create_release(
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
    Submitted { operator, form }: Submitted,
) -> PageResult {
    let created = match release_body(&form) {
        Ok(body) => ops::releases::create_from_request(
            &state,
            &operator.caller,
            app.clone(),
            group.clone(),
            body,
        )
        .await
        .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    match created {
        Ok(release) => Ok(see(&format!("/releases/{}", release.id))),
        Err(err) if err.status == StatusCode::NOT_FOUND && err.field.is_none() => Err(fail(err)),
        Err(err) => {
            pages::release_new_page(
                &state,
                &operator,
                &app,
                &group,
                err.status,
                FormState::refused(form, &err),
            )
            .await
        }
    }
}

pub async fn rollback(
    State(state): State<AppState>,
    Path((app, group)): Path<(String, String)>,
    Submitted { operator, .. }: Submitted,
) -> PageResult {
    match ops::releases::rollback_group(&state, &operator.caller, app.clone(), group.clone())
        .await
        .map_err(ApiError::from)
    {
        Ok(release) => Ok(see(&format!("/releases/{}", release.id))),
        Err(err) if err.status == StatusCode::NOT_FOUND => Err(fail(err)),
        Err(err) => {
            pages::group_page(
                &state,
                &operator,
                &app,
                &group,
                err.status,
                FormState::default(),
                Some(err.message),
            )
            .await
        }
    }
}

pub async fn continue_release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { operator, .. }: Submitted,
) -> PageResult {
    match ops::releases::continue_release(&state, &operator.caller, &id)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see(&format!("/releases/{id}"))),
        Err(err) if err.status == StatusCode::NOT_FOUND => Err(fail(err)),
        Err(err) => {
            pages::release_page(&state, &operator, &id, err.status, Some(err.message)).await
        }
    }
}

pub async fn cancel_release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { operator, .. }: Submitted,
) -> PageResult {
    match ops::releases::cancel(&state, &operator.caller, &id)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see(&format!("/releases/{id}"))),
        Err(err) if err.status == StatusCode::NOT_FOUND => Err(fail(err)),
        Err(err) => {
            pages::release_page(&state, &operator, &id, err.status, Some(err.message)).await
        }
    }
}
