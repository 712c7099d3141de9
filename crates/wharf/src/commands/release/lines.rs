//! The plain-lines view of a followed release (not a terminal): one line per
//! change.

#[allow(unused_imports)]
use super::*;

/// The plain-lines view: compares each snapshot with the previous one and says
/// what changed, one line per change.
#[derive(Default)]
pub(super) struct Lines {
    previous: Option<Box<Release>>,
}

impl Lines {
    pub(super) fn update(&mut self, release: &Release, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let id = clean(&release.id);
        let previous = self.previous.take();
        let old_state = previous.as_ref().map(|p| p.state.as_str());
        if previous.is_none() {
            let _ = writeln!(out, "{}", intro(release));
        }
        let state_changed = old_state != Some(release.state.as_str());
        if state_changed && release.state == "running" {
            let verb = if old_state == Some("paused") {
                "continues"
            } else {
                "running"
            };
            let _ = writeln!(out, "release {id} {verb}");
        }
        let total = release.batch_count;
        for batch in &release.batches {
            let old_batch = previous
                .as_ref()
                .and_then(|p| p.batches.iter().find(|b| b.number == batch.number));
            let batch_changed = old_batch.map(|b| b.state.as_str()) != Some(batch.state.as_str());
            let batch_ended = matches!(batch.state.as_str(), "succeeded" | "failed" | "cancelled");
            let prefix = format!("batch {}/{total}", batch.number);
            if batch_changed && batch.state == "running" {
                let names: Vec<String> = batch
                    .instances
                    .iter()
                    .map(|i| clean(&i.name).into_owned())
                    .collect();
                let _ = writeln!(out, "{prefix} running on {}", names.join(", "));
            }
            for instance in &batch.instances {
                let old = old_batch.and_then(|b| b.instances.iter().find(|i| i.id == instance.id));
                instance_lines(&mut out, &prefix, instance, old, now);
            }
            if batch_changed && batch_ended {
                let _ = writeln!(out, "{prefix} {}", clean(&batch.state));
            }
        }
        if state_changed {
            match release.state.as_str() {
                "paused" => {
                    let _ = writeln!(out, "{}", pause_note(release));
                }
                "succeeded" | "failed" | "cancelled" => {
                    let mut line = format!("release {id} {}", clean(&release.state));
                    if let Some(took) =
                        span(release.started_at.as_ref(), release.finished_at.as_ref())
                    {
                        let _ = write!(line, " in {took}");
                    }
                    if let Some(message) = &release.message {
                        let _ = write!(line, ": {}", clean(message));
                    }
                    let _ = writeln!(out, "{line}");
                }
                _ => {}
            }
        }
        self.previous = Some(Box::new(release.clone()));
        out
    }
}

pub(super) fn instance_lines(
    out: &mut String,
    prefix: &str,
    instance: &ReleaseInstance,
    old: Option<&ReleaseInstance>,
    now: DateTime<Utc>,
) {
    let name = clean(&instance.name);
    for step in &instance.steps {
        let old_step = old.and_then(|i| i.steps.iter().find(|s| s.name == step.name));
        if old_step.map(|s| s.state.as_str()) == Some(step.state.as_str()) {
            continue;
        }
        let step_name = clean(&step.name);
        if step.state == "running" {
            let _ = writeln!(out, "{prefix} {name}: {step_name} running");
            continue;
        }
        let mut line = format!("{prefix} {name}: {step_name} {}", clean(&step.state));
        if let Some(code) = step.exit_code {
            let _ = write!(line, " (exit {code})");
        }
        let _ = write!(line, " in {}", step_duration(step, now));
        if let Some(message) = &step.message {
            let _ = write!(line, ": {}", clean(message));
        }
        let _ = writeln!(out, "{line}");
    }
    let old_state = old.map(|i| i.state.as_str());
    if old_state == Some(instance.state.as_str()) {
        return;
    }
    match instance.state.as_str() {
        "succeeded" | "failed" | "cancelled" => {
            let mut line = format!("{name} {}", clean(&instance.state));
            if let Some(took) = span(instance.started_at.as_ref(), instance.finished_at.as_ref()) {
                let _ = write!(line, " in {took}");
            }
            if let Some(message) = &instance.message {
                let _ = write!(line, ": {}", clean(message));
            }
            let _ = writeln!(out, "{line}");
        }
        _ => {}
    }
}
