//! `wharf release show` and `list`: the release as a table of fields and its
//! instances, and the list of releases.

#[allow(unused_imports)]
use super::*;

pub(super) fn release_table(releases: &[Release]) -> String {
    let mut table = Table::new(&[
        "ID",
        "APP",
        "GROUP",
        "DEPLOYMENT",
        "KIND",
        "STATE",
        "INSTANCES",
        "CREATED",
        "DURATION",
    ]);
    for r in releases {
        table.row([
            r.id.clone(),
            r.app.clone(),
            r.group.clone(),
            r.deployment.clone(),
            r.kind.clone(),
            r.state.clone(),
            counts_short(r),
            time(&r.created_at),
            span(r.started_at.as_ref(), r.finished_at.as_ref()).unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// `2/3 ok, 1 failed`: succeeded out of total, then what else is not zero.
pub(super) fn counts_short(release: &Release) -> String {
    let c = &release.counts;
    let mut text = format!("{}/{} ok", c.succeeded, c.total);
    for (n, what) in [
        (c.running, "running"),
        (c.failed, "failed"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            let _ = write!(text, ", {n} {what}");
        }
    }
    text
}

pub(super) fn render_release(r: &Release, now: DateTime<Utc>) -> String {
    let c = &r.counts;
    let mut fields = Fields::new();
    fields
        .add("ID", &r.id)
        .add("Application", &r.app)
        .add("Group", &r.group)
        .add("Deployment", &r.deployment)
        .add("Kind", &r.kind);
    if let Some(of) = &r.rollback_of {
        fields.add("Rollback of", of);
    }
    if let Some(by) = &r.rolled_back_by {
        fields.add("Rolled back by", by);
    }
    fields.add("State", &r.state);
    if let Some(message) = &r.message {
        fields.add("Message", message);
    }
    let interval = if r.batch_interval_secs > 0 {
        format!(", {}s between batches", r.batch_interval_secs)
    } else {
        String::new()
    };
    fields
        .add(
            "Batches",
            format!("{}, pause {}{interval}", r.batch_count, r.pause),
        )
        .add("Max failures", r.max_failures.to_string())
        .add("Rollback on failure", yes_no(r.rollback_on_failure))
        .add("Created", time(&r.created_at))
        .add(
            "Started",
            r.started_at.as_ref().map_or("-".to_owned(), time),
        )
        .add(
            "Finished",
            r.finished_at.as_ref().map_or("-".to_owned(), time),
        );
    let end = r.finished_at.or(r.started_at.map(|_| now));
    if let Some(took) = span(r.started_at.as_ref(), end.as_ref()) {
        fields.add("Duration", took);
    }
    fields.add(
        "Instances",
        format!(
            "{} total: {} succeeded, {} failed, {} running, {} pending, {} cancelled",
            c.total, c.succeeded, c.failed, c.running, c.pending, c.cancelled
        ),
    );
    let mut out = fields.render();
    for batch in &r.batches {
        let _ = writeln!(
            out,
            "\nBatch {}/{}: {}",
            batch.number,
            r.batch_count,
            clean(&batch.state)
        );
        for instance in &batch.instances {
            out.push_str(&render_instance(instance, now));
        }
    }
    out
}

pub(super) fn render_instance(i: &ReleaseInstance, now: DateTime<Utc>) -> String {
    let mut line = format!(
        "  {} ({}): {}",
        clean(&i.name),
        clean(&i.id),
        clean(&i.state)
    );
    let end = i.finished_at.or(i.started_at.map(|_| now));
    if let Some(took) = span(i.started_at.as_ref(), end.as_ref()) {
        let _ = write!(line, " in {took}");
    }
    if let Some(digest) = &i.image_digest {
        let _ = write!(line, ", image {}", clean(digest));
    }
    if let Some(message) = &i.message {
        let _ = write!(line, ": {}", clean(message));
    }
    let mut out = format!("{line}\n");
    if i.steps.is_empty() {
        return out;
    }
    let mut table = Table::new(&["STEP", "STATE", "EXIT", "DURATION", "MESSAGE"]);
    for step in &i.steps {
        let mut message = step.message.clone().unwrap_or_default();
        if step.dropped_bytes > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            let _ = write!(message, "{} bytes of output dropped", step.dropped_bytes);
        }
        table.row([
            step.name.clone(),
            step.state.clone(),
            step.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            step_duration(step, now),
            or_dash(Some(message.as_str())).to_owned(),
        ]);
    }
    for row in table.render().lines() {
        let _ = writeln!(out, "    {row}");
    }
    out
}

pub(super) fn step_duration(step: &ReleaseStep, now: DateTime<Utc>) -> String {
    let end = step.finished_at.unwrap_or(now);
    span(Some(&step.started_at), Some(&end)).unwrap_or_else(|| "-".into())
}

/// The time from `start` to `end` as people read it: `3.2s`, `2m05s`, `1h02m`.
pub(super) fn span(start: Option<&DateTime<Utc>>, end: Option<&DateTime<Utc>>) -> Option<String> {
    let (start, end) = (start?, end?);
    let millis = (*end - *start).num_milliseconds().max(0);
    Some(human_millis(millis as u64))
}

pub(super) fn human_millis(millis: u64) -> String {
    let secs = millis / 1000;
    if secs < 60 {
        format!("{}.{}s", secs, (millis % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}
