//! Scaling groups in the release engine: the lease a running release holds on the
//! scaling group bound to its group, the resume when the release ends (or is
//! gone), the catch-up release of instances held meanwhile, and the on-suspend and
//! on-resume commands, run by the server in their own process group.
//!
//! Like the driver, this is a reconciler over the store: the lease, the pending
//! hooks and the instances awaiting catch-up are all rows, so a restarted server
//! finds a suspended group whose release has ended and resumes it.

use crate::ops::releases::{self, kind_of, NewRelease};
use crate::ops::Caller;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use wharf_domain::release::{PauseMode, ReleaseKind};
use wharf_store::{HookRunRecord, ReleaseRecord, ScalingGroupRecord, ScalingState, StoreError};

/// How long an on-suspend or on-resume command may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a hook's output (stdout and stderr together) is kept: the end.
pub const HOOK_OUTPUT_KEEP_BYTES: usize = 16 * 1024;

/// How many times a failing on-resume command is tried before the server gives
/// up on it (the error stays visible in `scaling-group show`).
pub const RESUME_HOOK_ATTEMPTS: u32 = 5;

/// The wait before retry `n` (1-based) of a failed on-resume command: 1 s, 2 s,
/// 4 s, ... at most a minute.
fn retry_delay(failed_attempts: u32) -> chrono::Duration {
    let secs = 1i64 << failed_attempts.saturating_sub(1).min(6);
    chrono::Duration::seconds(secs.min(60))
}

/// Called by the driver just before it starts `release`: suspends the scaling
/// groups bound to the release's group. Catch-up releases take no lease: they
/// only bring instances that joined up to date.
pub async fn suspend_for(state: &AppState, release: &ReleaseRecord) -> Result<(), StoreError> {
    if !kind_of(release).takes_scaling_lease() {
        return Ok(());
    }
    for sg in bound_to(state, &release.app, &release.group).await? {
        if state
            .store
            .scaling_group_suspend(&sg.name, &release.id, Utc::now())
            .await?
        {
            tracing::info!(scaling_group = %sg.name, release = %release.id, "scaling group suspended");
        }
    }
    Ok(())
}

async fn bound_to(
    state: &AppState,
    app: &str,
    group: &str,
) -> Result<Vec<ScalingGroupRecord>, StoreError> {
    Ok(state
        .store
        .scaling_group_list()
        .await?
        .into_iter()
        .filter(|sg| sg.app == app && sg.group == group)
        .collect())
}

/// One pass over every scaling group: end leases whose release ended, create
/// catch-up releases, start pending hooks.
pub async fn reconcile(state: &AppState) -> Result<(), StoreError> {
    for sg in state.store.scaling_group_list().await? {
        let name = sg.name.clone();
        if let Err(err) = reconcile_one(state, sg).await {
            tracing::error!(scaling_group = %name, error = ?err, "reconciling a scaling group failed");
        }
    }
    Ok(())
}

async fn reconcile_one(state: &AppState, mut sg: ScalingGroupRecord) -> Result<(), StoreError> {
    let now = Utc::now();
    if let (ScalingState::Suspended, Some(holder)) = (sg.state, sg.held_by.clone()) {
        let ended = match state.store.release_fetch(&holder).await {
            Ok(release) => release.state.is_terminal(),
            Err(StoreError::NotFound { .. }) => true,
            Err(err) => return Err(err),
        };
        if !ended {
            return run_pending_hook(state, &sg, now).await;
        }
        // Another release of the group (such as an automatic rollback) keeps the
        // group suspended: the lease passes to it instead of resuming in between.
        // A group exec changes no deployment and takes no lease.
        let next = state
            .store
            .release_list_active()
            .await?
            .into_iter()
            .find(|r| r.app == sg.app && r.group == sg.group && kind_of(r).takes_scaling_lease());
        if let Some(next) = next {
            state
                .store
                .scaling_group_suspend(&sg.name, &next.id, now)
                .await?;
            tracing::info!(scaling_group = %sg.name, release = %next.id, "scaling group lease passed on");
            return run_pending_hook(state, &sg, now).await;
        }
        if state
            .store
            .scaling_group_resume(&sg.name, &holder, now)
            .await?
        {
            tracing::info!(scaling_group = %sg.name, release = %holder, "scaling group resumed");
        }
        sg = state.store.scaling_group_fetch(&sg.name).await?;
    }
    if sg.state == ScalingState::Active {
        catch_up(state, &sg).await?;
    }
    run_pending_hook(state, &sg, now).await
}

/// Creates the catch-up release of instances that joined on resume, or lets them
/// just join when the group has no current deployment. They are forgotten only
/// once the release exists, so a failure here is retried on the next pass.
async fn catch_up(state: &AppState, sg: &ScalingGroupRecord) -> Result<(), StoreError> {
    let joined: Vec<String> = state
        .store
        .scaling_group_held(&sg.name)
        .await?
        .into_iter()
        .filter(|h| h.joined)
        .map(|h| h.instance_id)
        .collect();
    if joined.is_empty() {
        return Ok(());
    }
    let group = state.store.group_fetch(&sg.app, &sg.group).await?;
    if let Some(deployment) = group.current_deployment {
        let new = NewRelease {
            app: sg.app.clone(),
            group: sg.group.clone(),
            deployment,
            batches: 1,
            pause: PauseMode::Auto,
            batch_interval_secs: 0,
            max_failures: joined.len() as u32,
            rollback_on_failure: false,
            kind: ReleaseKind::CatchUp,
            rollback_of: None,
            only_instances: Some(joined.clone()),
        };
        match releases::create(state, &Caller::server(), new).await {
            Ok(release) => {
                tracing::info!(scaling_group = %sg.name, release = %release.id, instances = joined.len(), "catch-up release created")
            }
            // Another release of the group started first; try again after it.
            Err(err) => {
                tracing::warn!(scaling_group = %sg.name, error = %err, "catch-up release not created yet; retrying");
                return Ok(());
            }
        }
    }
    state.store.scaling_group_caught_up(&sg.name, &joined).await
}

/// Starts the next pending hook of `sg` in its own task, unless one runs already:
/// a slow command never holds up the driver.
async fn run_pending_hook(
    state: &AppState,
    sg: &ScalingGroupRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The suspend hook comes first so that the two always run in order.
    let (hook, command, attempt) = if sg.suspend_hook_pending {
        ("suspend", sg.on_suspend.clone(), 1)
    } else if sg.resume_hook_pending && sg.next_hook_at.is_none_or(|at| at <= now) {
        ("resume", sg.on_resume.clone(), sg.resume_attempts + 1)
    } else {
        return Ok(());
    };
    if !state.wakeups.hook_start(&sg.name) {
        return Ok(());
    }
    // `sg` was read before the slot was taken: a hook that ended in between has
    // recorded itself and freed the slot, so the record is read again, lest the
    // same hook run twice.
    let still_pending = match state.store.scaling_group_fetch(&sg.name).await {
        Ok(fresh) if hook == "suspend" => fresh.suspend_hook_pending,
        Ok(fresh) => fresh.resume_hook_pending && fresh.resume_attempts + 1 == attempt,
        Err(err) => {
            state.wakeups.hook_end(&sg.name);
            return Err(err);
        }
    };
    if !still_pending {
        state.wakeups.hook_end(&sg.name);
        return Ok(());
    }
    let state = state.clone();
    let name = sg.name.clone();
    let release = sg.last_release.clone();
    tokio::spawn(async move {
        let started_at = Utc::now();
        let outcome = match &command {
            Some(command) => run_hook(command, &name, release.as_deref().unwrap_or("")).await,
            None => HookOutcome::default(),
        };
        let failed = outcome.error.is_some();
        let retry_at = (hook == "resume" && failed && attempt < RESUME_HOOK_ATTEMPTS)
            .then(|| Utc::now() + retry_delay(attempt));
        if let Some(error) = &outcome.error {
            tracing::warn!(scaling_group = %name, hook, attempt, error, retrying = retry_at.is_some(), "scaling group hook failed");
        } else {
            tracing::info!(scaling_group = %name, hook, attempt, "scaling group hook ran");
        }
        let run = HookRunRecord {
            hook: hook.to_owned(),
            release_id: release,
            attempt,
            started_at,
            finished_at: Utc::now(),
            exit_code: outcome.exit_code,
            output: outcome.output,
            error: outcome.error,
        };
        if let Err(err) = state.store.scaling_hook_record(&name, &run, retry_at).await {
            tracing::error!(scaling_group = %name, error = ?err, "recording a hook run failed");
        }
        state.wakeups.hook_end(&name);
        state.wakeups.wake_driver();
    });
    Ok(())
}

#[derive(Debug, Default)]
struct HookOutcome {
    exit_code: Option<i32>,
    output: String,
    error: Option<String>,
}

/// Runs `bash -c command` in a process group of its own with the scaling group and
/// release in its environment; kills the group at the timeout.
async fn run_hook(command: &str, scaling_group: &str, release: &str) -> HookOutcome {
    let mut child = match Command::new("bash")
        .arg("-c")
        .arg(command)
        .env("WHARF_SCALING_GROUP", scaling_group)
        .env("WHARF_RELEASE", release)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            return HookOutcome {
                error: Some(format!("could not start bash: {err}")),
                ..HookOutcome::default()
            }
        }
    };
    let pgid = child.id();
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    .map(|pipe| tokio::spawn(keep_tail(pipe, output.clone())))
    .collect();
    let status = tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await;
    // Whatever the command left running in its group goes with it, so that the
    // pipes close and nothing outlives the hook.
    if let Some(pgid) = pgid {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let bytes = output.lock().map(|o| o.clone()).unwrap_or_default();
    let output = String::from_utf8_lossy(&bytes).into_owned();
    match status {
        Err(_) => HookOutcome {
            exit_code: None,
            output,
            error: Some(format!(
                "timed out after {} s and was killed",
                HOOK_TIMEOUT.as_secs()
            )),
        },
        Ok(Err(err)) => HookOutcome {
            exit_code: None,
            output,
            error: Some(format!("could not wait for the command: {err}")),
        },
        Ok(Ok(status)) => HookOutcome {
            exit_code: status.code(),
            error: match status.code() {
                Some(0) => None,
                Some(code) => Some(format!("exited with status {code}")),
                None => Some("killed by a signal".to_owned()),
            },
            output,
        },
    }
}

/// Reads a pipe to its end, keeping only the last bytes.
async fn keep_tail(mut pipe: Box<dyn AsyncRead + Send + Unpin>, output: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
        out.extend_from_slice(&buf[..n]);
        if out.len() > HOOK_OUTPUT_KEEP_BYTES {
            let cut = out.len() - HOOK_OUTPUT_KEEP_BYTES;
            out.drain(..cut);
        }
    }
}
