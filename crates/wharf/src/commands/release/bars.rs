//! The terminal view of a followed release: a status line and one progress bar
//! per batch.

#[allow(unused_imports)]
use super::*;

/// The terminal view: a status line and one bar per batch (instances done out of
/// the batch's instances, its state, what runs now and for how long).
pub(super) struct Bars {
    // Kept so the bars stay drawn together for the whole follow.
    _multi: MultiProgress,
    header: ProgressBar,
    batches: Vec<ProgressBar>,
}

impl Bars {
    pub(super) fn new(release: &Release) -> Self {
        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template("  {prefix} [{bar:24}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let batches = release
            .batches
            .iter()
            .map(|batch| {
                let bar = multi.add(ProgressBar::new(batch.instances.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("batch {}/{}", batch.number, release.batch_count));
                bar
            })
            .collect();
        Self {
            _multi: multi,
            header,
            batches,
        }
    }

    pub(super) fn update(&mut self, release: &Release, now: DateTime<Utc>) {
        let mut status = format!("{}: {}", intro(release), clean(&release.state));
        if release.state == "paused" {
            status = pause_note(release);
        } else if let Some(message) = &release.message {
            let _ = write!(status, ": {}", clean(message));
        }
        self.header.set_message(status);
        for (bar, batch) in self.batches.iter().zip(&release.batches) {
            bar.set_length(batch.instances.len() as u64);
            let done = batch
                .instances
                .iter()
                .filter(|i| matches!(i.state.as_str(), "succeeded" | "failed" | "cancelled"))
                .count();
            bar.set_position(done as u64);
            bar.set_message(batch_message(batch, now));
        }
    }

    /// Leaves the bars on the screen in their last state.
    pub(super) fn finish(&mut self) {
        self.header.finish();
        for bar in &self.batches {
            bar.finish();
        }
        // indicatif leaves the cursor at the end of the last bar; what is printed
        // next belongs on a line of its own.
        let _ = writeln!(std::io::stderr());
    }

    pub(super) fn abandon(&mut self) {
        for bar in &self.batches {
            bar.abandon();
        }
        self.header.abandon();
    }
}

/// A batch's state, elapsed time, failures and the steps running on its instances.
pub(super) fn batch_message(batch: &ReleaseBatch, now: DateTime<Utc>) -> String {
    let mut message = clean(&batch.state).into_owned();
    let started = batch.instances.iter().filter_map(|i| i.started_at).min();
    let ended = matches!(batch.state.as_str(), "succeeded" | "failed" | "cancelled");
    let finished = if ended {
        batch.instances.iter().filter_map(|i| i.finished_at).max()
    } else {
        Some(now)
    };
    if let Some(took) = span(started.as_ref(), finished.as_ref()) {
        let _ = write!(message, " {took}");
    }
    let failed = batch
        .instances
        .iter()
        .filter(|i| i.state == "failed")
        .count();
    if failed > 0 {
        let _ = write!(message, ", {failed} failed");
    }
    let running: Vec<String> = batch
        .instances
        .iter()
        .filter_map(|i| {
            let step = i.steps.iter().rev().find(|s| s.state == "running")?;
            Some(format!("{}: {}", clean(&i.name), clean(&step.name)))
        })
        .collect();
    if !running.is_empty() {
        let _ = write!(message, "  {}", running.join(", "));
    }
    message
}
