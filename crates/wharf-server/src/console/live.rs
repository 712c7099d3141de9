//! `GET /console/releases/{id}/events`: a release as server-sent events, for the
//! release page to follow without reloading.
//!
//! Events:
//! - `release`: the release as `wharf_api::Release` JSON (batches, instances,
//!   steps), sent at the start and whenever it changes;
//! - `log`: one step's output as `wharf_api::StepLog` JSON, sent at the start and
//!   whenever that step's output or state changes;
//! - `end`: the release has finished; the stream closes after it.
//!
//! The stream looks at the store every [`POLL`] and sends only what changed; it
//! ends when the release finishes, when the browser goes away, or when the
//! server shuts down (so that a graceful shutdown does not wait for open pages).

use super::pages::{fail, is_terminal, release_logs};
use super::session::Operator;
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// How often an open stream looks at the store.
pub const POLL: Duration = Duration::from_millis(500);

struct Follow {
    state: AppState,
    caller: Caller,
    id: String,
    last_release: Option<String>,
    /// Per `instance/step`: what was last sent of it.
    last_logs: HashMap<String, (String, usize, u64, Option<i32>, bool)>,
    first: bool,
    done: bool,
}

impl Follow {
    /// The events that bring a page up to date, or `None` when the stream ends.
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        loop {
            if !self.first {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = self.state.wakeups.shutting_down() => return None,
                }
            }
            self.first = false;
            let release = match ops::releases::view(&self.state, &self.caller, &self.id).await {
                Ok(release) => release,
                Err(err) => {
                    tracing::warn!(release = %self.id, error = %err, "live release stream stopped");
                    return None;
                }
            };
            let logs = release_logs(&self.state, &self.caller, &self.id)
                .await
                .ok()?;
            let mut events = Vec::new();
            for log in logs {
                let key = format!("{}/{}", log.instance_id, log.step);
                let seen = (
                    log.state.clone(),
                    log.output.len(),
                    log.dropped_bytes,
                    log.exit_code,
                    log.message.is_some(),
                );
                if self.last_logs.get(&key) != Some(&seen) {
                    self.last_logs.insert(key, seen);
                    events.push(json_event("log", &log)?);
                }
            }
            let json = serde_json::to_string(&release).ok()?;
            if self.last_release.as_deref() != Some(json.as_str()) {
                events.push(Event::default().event("release").data(json.clone()));
                self.last_release = Some(json);
            }
            if is_terminal(&release.state) {
                events.push(Event::default().event("end").data(release.state));
                self.done = true;
            }
            if !events.is_empty() {
                return Some(events);
            }
        }
    }
}

fn json_event<T: serde::Serialize>(name: &str, value: &T) -> Option<Event> {
    // JSON escapes line breaks, so the data is one line whatever the output holds.
    Some(
        Event::default()
            .event(name)
            .data(serde_json::to_string(value).ok()?),
    )
}

pub async fn release_events(
    operator: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = ops::releases::fetch(&state, &operator.caller, &id).await {
        return fail(err);
    }
    let follow = Follow {
        state,
        caller: operator.caller,
        id,
        last_release: None,
        last_logs: HashMap::new(),
        first: true,
        done: false,
    };
    let events = stream::unfold(follow, |mut follow| async move {
        let events = follow.next_events().await?;
        Some((
            stream::iter(events.into_iter().map(Ok::<_, Infallible>)),
            follow,
        ))
    })
    .flatten();
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
