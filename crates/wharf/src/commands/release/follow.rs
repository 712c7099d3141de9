//! Following a release until it ends: polling with `?after=VERSION&wait_secs`,
//! the outcome and its exit code, and the summary line.

#[allow(unused_imports)]
use super::*;

pub(super) fn state_of(release: &Release) -> Option<ReleaseState> {
    ReleaseState::parse(&release.state)
}

pub(super) fn is_terminal(release: &Release) -> bool {
    state_of(release).is_some_and(ReleaseState::is_terminal)
}

/// Follows a release until it ends, then prints the outcome; an error unless it
/// succeeded.
pub(super) async fn follow(
    ctx: &CommandContext,
    client: &Client,
    release: Release,
) -> Result<(), CommandError> {
    let release = follow_progress(ctx, client, release).await?;
    outcome(ctx, client, &release).await
}

/// Shows the progress of a release (or of a group exec, which is a release row
/// too) on stderr until it ends, and returns it as it ended. Ctrl-C stops
/// following with [`CommandError::Interrupted`].
pub(crate) async fn follow_progress(
    ctx: &CommandContext,
    client: &Client,
    mut release: Release,
) -> Result<Release, CommandError> {
    let mut view = if std::io::stderr().is_terminal() {
        Progress::Bars(Bars::new(&release))
    } else {
        Progress::Lines(Lines::default())
    };
    let mut interrupt = ctrl_c();
    view.show(ctx, &release)?;
    let release_id = release.id.clone();
    let longest_wait = if release.counts.total <= SMALL_RELEASE_INSTANCES {
        SMALL_RELEASE_POLL_INTERVAL
    } else {
        POLL_INTERVAL
    };
    let mut poller = Poller::new(client, &release_id).longest_wait(longest_wait);
    // The release's version from the last answer: the server answers the next
    // fetch only once the release has changed (or after FOLLOW_WAIT_SECS), so the
    // end of a release shows as soon as the server records it.
    let mut version: Option<String> = None;
    while !is_terminal(&release) {
        let after = version.clone();
        let fetch = move |c: &'_ Client, id: &'_ str| {
            let after = after.clone();
            let id = id.to_owned();
            let c = c.clone();
            async move {
                c.release_follow(&id, after.as_deref(), FOLLOW_WAIT_SECS)
                    .await
            }
        };
        let next = tokio::select! {
            () = &mut interrupt => None,
            next = poller.next(fetch) => Some(next?),
        };
        let Some(next) = next else {
            view.abandon();
            let id = clean(&release.id);
            ctx.ui.note(&format!(
                "\nStopped following; release {id} goes on without this command. \
                 Follow it again with `wharf release show {id} --follow`, \
                 or cancel it with `wharf release cancel {id}`."
            ))?;
            return Err(CommandError::Interrupted);
        };
        let (next, next_version) = next;
        if next_version.is_some() {
            // The server waits for changes itself; a server that gives no
            // version is polled at the intervals above instead.
            poller.no_pause();
        }
        release = next;
        version = next_version;
        view.show(ctx, &release)?;
    }
    view.finish(&release);
    Ok(release)
}

/// A future that resolves on Ctrl-C (SIGINT). On Unix the handler is in place when
/// this returns, before anything is printed; if it cannot be installed the future
/// never resolves and Ctrl-C keeps its default effect.
pub(super) fn ctrl_c() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::interrupt()) {
            Ok(mut sigint) => Box::pin(async move {
                if sigint.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }),
            Err(_) => Box::pin(std::future::pending()),
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Fetches something at an interval that grows from [`FIRST_POLL_INTERVAL`] to
/// [`POLL_INTERVAL`] (or a shorter longest wait), riding out a server that is
/// briefly unreachable (restarting, say) for up to [`UNREACHABLE_GRACE`].
pub(super) struct Poller<'a> {
    client: &'a Client,
    id: &'a str,
    first: bool,
    interval: Duration,
    longest: Duration,
}

impl<'a> Poller<'a> {
    pub(super) fn new(client: &'a Client, id: &'a str) -> Self {
        Self {
            client,
            id,
            first: true,
            interval: FIRST_POLL_INTERVAL,
            longest: POLL_INTERVAL,
        }
    }

    /// Fetches again at once: for fetches that wait on the server.
    pub(super) fn no_pause(&mut self) {
        self.interval = Duration::ZERO;
        self.longest = Duration::ZERO;
    }

    /// Waits at most `longest` between fetches.
    pub(super) fn longest_wait(mut self, longest: Duration) -> Self {
        self.longest = longest;
        self
    }

    pub(super) async fn next<T, F, Fut>(&mut self, fetch: F) -> Result<T, CommandError>
    where
        F: Fn(&'a Client, &'a str) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        if !std::mem::take(&mut self.first) {
            tokio::time::sleep(self.interval).await;
            self.interval = (self.interval * 2).min(self.longest);
        }
        let mut failing_since: Option<Instant> = None;
        loop {
            match fetch(self.client, self.id).await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_transient() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNREACHABLE_GRACE {
                        return Err(err.into());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// Prints how a followed release ended and turns anything but success into an
/// error (exit code 1).
pub(super) async fn outcome(
    ctx: &CommandContext,
    client: &Client,
    release: &Release,
) -> Result<(), CommandError> {
    match ctx.ui.format {
        OutputFormat::Json => ctx.ui.json(release)?,
        OutputFormat::Table => ctx.ui.stdout(&summary(release))?,
    }
    if state_of(release) == Some(ReleaseState::Succeeded) {
        return Ok(());
    }
    let id = clean(&release.id);
    let mut notes = String::new();
    let mut hint = None;
    for instance in release.batches.iter().flat_map(|b| &b.instances) {
        if instance.state != "failed" {
            continue;
        }
        let step = instance
            .steps
            .iter()
            .rev()
            .find(|s| s.state == "failed")
            .or(instance.steps.last());
        let mut line = format!("  {} failed", clean(&instance.name));
        if let Some(step) = step {
            let _ = write!(line, " in step {}", clean(&step.name));
            if let Some(code) = step.exit_code {
                let _ = write!(line, " (exit {code})");
            }
        }
        if let Some(message) = &instance.message {
            let _ = write!(line, ": {}", clean(message));
        }
        let _ = writeln!(notes, "{line}");
        if hint.is_none() {
            hint = Some(match step {
                Some(step) => format!(
                    "wharf release logs {id} --instance {} --step {}",
                    clean(&instance.name),
                    clean(&step.name)
                ),
                None => format!(
                    "wharf release logs {id} --instance {}",
                    clean(&instance.name)
                ),
            });
        }
    }
    if let Some(hint) = hint {
        let _ = writeln!(notes, "See what a step printed with `{hint}`.");
    }
    if release.rollback_on_failure && state_of(release) == Some(ReleaseState::Failed) {
        // The server starts the rollback itself; point at it when it is there.
        if let Ok(recent) = client
            .release_list(Some(&release.app), Some(&release.group), Some(10))
            .await
        {
            if let Some(rollback) = recent
                .iter()
                .find(|r| r.rollback_of.as_deref() == Some(&release.id))
            {
                let _ = writeln!(
                    notes,
                    "Rollback release {rid} publishes {dep} again; follow it with `wharf release show {rid} --follow`.",
                    rid = clean(&rollback.id),
                    dep = clean(&rollback.deployment)
                );
            }
        }
    }
    if !notes.is_empty() {
        ctx.ui.note(&notes)?;
    }
    let mut message = format!("release {} {}", release.id, release.state);
    if let Some(why) = &release.message {
        let _ = write!(message, ": {why}");
    }
    Err(CommandError::Failed(message))
}

/// One line about how a release ended, for stdout in table mode.
pub(super) fn summary(release: &Release) -> String {
    let c = &release.counts;
    let mut line = format!(
        "Release {} {}: {}/{} instance(s) succeeded",
        clean(&release.id),
        clean(&release.state),
        c.succeeded,
        c.total
    );
    if c.failed > 0 {
        let _ = write!(line, ", {} failed", c.failed);
    }
    if c.cancelled > 0 {
        let _ = write!(line, ", {} cancelled", c.cancelled);
    }
    if let Some(took) = span(release.started_at.as_ref(), release.finished_at.as_ref()) {
        let _ = write!(line, " in {took}");
    }
    line
}

/// What a new release is, in one line.
pub(super) fn intro(release: &Release) -> String {
    let what = match release.kind.as_str() {
        "rollback" => "Rollback release",
        "catch-up" => "Catch-up release",
        _ => "Release",
    };
    format!(
        "{what} {} publishes {} to {}/{}: {} instance(s) in {} batch(es){}",
        clean(&release.id),
        clean(&release.deployment),
        clean(&release.app),
        clean(&release.group),
        release.counts.total,
        release.batch_count,
        match release.pause.as_str() {
            "first" => ", pausing after the first",
            "each" => ", pausing after each",
            _ => "",
        }
    )
}

/// The last batch that has ended, the one a paused release paused after.
pub(super) fn paused_after(release: &Release) -> Option<u32> {
    release
        .batches
        .iter()
        .filter(|b| matches!(b.state.as_str(), "succeeded" | "failed" | "cancelled"))
        .map(|b| b.number)
        .max()
}

pub(super) fn pause_note(release: &Release) -> String {
    let id = clean(&release.id);
    let after = match paused_after(release) {
        Some(n) => format!(" after batch {n}/{}", release.batch_count),
        None => String::new(),
    };
    format!(
        "release {id} paused{after}: run 'wharf release continue {id}' to go on \
         (or 'wharf release cancel {id}')"
    )
}

pub(super) enum Progress {
    Bars(Bars),
    Lines(Lines),
}

impl Progress {
    pub(super) fn show(
        &mut self,
        ctx: &CommandContext,
        release: &Release,
    ) -> Result<(), CommandError> {
        match self {
            Self::Bars(bars) => {
                bars.update(release, Utc::now());
                Ok(())
            }
            Self::Lines(lines) => {
                let text = lines.update(release, Utc::now());
                if text.is_empty() {
                    Ok(())
                } else {
                    ctx.ui.note(&text)
                }
            }
        }
    }

    pub(super) fn finish(&mut self, release: &Release) {
        if let Self::Bars(bars) = self {
            bars.update(release, Utc::now());
            bars.finish();
        }
    }

    pub(super) fn abandon(&mut self) {
        if let Self::Bars(bars) = self {
            bars.abandon();
        }
    }
}
