//! `wharf release logs`: the steps' output, once or followed (`--follow`).

#[allow(unused_imports)]
use super::*;

pub(super) async fn logs(ctx: &CommandContext, args: LogsArgs) -> Result<(), CommandError> {
    let client = ctx.client()?;
    let fetch_logs = |c: &Client, id: &str| {
        let (c, id) = (c.clone(), id.to_owned());
        let (instance, step) = (args.instance.clone(), args.step.clone());
        async move {
            c.release_logs(&id, instance.as_deref(), step.as_deref())
                .await
        }
    };
    let escape = std::io::stdout().is_terminal();
    if !args.follow {
        let logs = fetch_logs(&client, &args.id).await?;
        if ctx.ui.format == OutputFormat::Json {
            return ctx.ui.json(&logs);
        }
        let mut printer = LogPrinter::new(escape);
        let mut text = printer.update(&logs);
        printer.line_start(&mut text);
        return write_stdout(&text);
    }
    let mut printer = LogPrinter::new(escape);
    let mut poller = Poller::new(&client, &args.id);
    let mut ended_at: Option<Instant> = None;
    loop {
        // The release first: if it had ended, the logs fetched after it are final.
        let release = poller.next(|c, id| c.release_fetch(id)).await?;
        let logs = Poller::new(&client, &args.id).next(fetch_logs).await?;
        match ctx.ui.format {
            OutputFormat::Json => {
                for chunk in printer.chunks(&logs) {
                    let line = serde_json::to_string(&chunk)
                        .map_err(|err| CommandError::Internal(err.into()))?;
                    ctx.ui.stdout(&line)?;
                }
            }
            OutputFormat::Table => {
                write_stdout(&printer.update(&logs))?;
            }
        }
        if is_terminal(&release) {
            let running = logs.iter().any(|l| l.state == "running");
            let since = *ended_at.get_or_insert_with(Instant::now);
            if !running {
                break;
            }
            if since.elapsed() >= RUNNING_STEPS_GRACE {
                ctx.ui.note(&format!(
                    "release {} ended but some steps still show as running; stopped following",
                    clean(&release.id)
                ))?;
                break;
            }
        }
    }
    if ctx.ui.format == OutputFormat::Table && !printer.at_line_start {
        write_stdout("\n")?;
    }
    Ok(())
}

/// Writes log text on stdout as it is (no newline added).
pub(super) fn write_stdout(text: &str) -> Result<(), CommandError> {
    if text.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::output)
}

/// What `logs --follow --output json` prints, one per line: the new output of one
/// step since the previous object about it.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct LogChunk {
    pub(super) instance_id: String,
    pub(super) instance_name: String,
    pub(super) step: String,
    pub(super) state: String,
    pub(super) exit_code: Option<i32>,
    pub(super) message: Option<String>,
    /// The byte offset of `output` in everything the step printed.
    pub(super) offset: u64,
    /// Bytes the server dropped (kept no more) between the previous chunk and this one.
    pub(super) skipped_bytes: u64,
    pub(super) output: String,
}

/// Where printing of one step's output has got to.
#[derive(Default)]
pub(super) struct Cursor {
    /// The absolute offset printed up to: `dropped_bytes` plus the bytes of
    /// `output` already printed.
    printed_to: u64,
    /// Whether the step's end has been reported.
    ended: bool,
}

/// Turns successive fetches of a release's logs into the new text to print.
pub(super) struct LogPrinter {
    escape: bool,
    cursors: HashMap<(String, String), Cursor>,
    /// The step whose output was printed last, to repeat its header when another
    /// step's output comes in between.
    last: Option<(String, String)>,
    at_line_start: bool,
}

impl LogPrinter {
    pub(super) fn new(escape: bool) -> Self {
        Self {
            escape,
            cursors: HashMap::new(),
            last: None,
            at_line_start: true,
        }
    }

    /// The new part of `log` since the last call: bytes skipped because the
    /// server dropped them, the new text, and its absolute offset. Moves the cursor.
    pub(super) fn advance<'a>(cursor: &mut Cursor, log: &'a StepLog) -> (u64, u64, &'a str) {
        let start = log.dropped_bytes;
        let end = start + log.output.len() as u64;
        if cursor.printed_to >= end {
            return (0, cursor.printed_to, "");
        }
        let (skipped, mut from) = if cursor.printed_to < start {
            (start - cursor.printed_to, 0)
        } else {
            (0, (cursor.printed_to - start) as usize)
        };
        while !log.output.is_char_boundary(from) {
            from += 1;
        }
        cursor.printed_to = end;
        (skipped, start + from as u64, &log.output[from..])
    }

    /// The text to print for what is new in `logs`.
    pub(super) fn update(&mut self, logs: &[StepLog]) -> String {
        let mut out = String::new();
        for log in logs {
            let key = (log.instance_id.clone(), log.step.clone());
            let is_new = !self.cursors.contains_key(&key);
            let cursor = self.cursors.entry(key.clone()).or_default();
            let (skipped, offset, text) = Self::advance(cursor, log);
            let running = log.state == "running";
            let ends_now = !running && !cursor.ended;
            if !is_new && text.is_empty() && skipped == 0 && !ends_now {
                continue;
            }
            cursor.ended = !running;
            if is_new {
                // A step seen for the first time: its header says how it stands.
                self.line_start(&mut out);
                let _ = writeln!(out, "{}", log_header(log));
            } else if self.last.as_ref() != Some(&key) {
                // More output of a step after another step's: name it again.
                self.line_start(&mut out);
                let status = if running { " (running)" } else { "" };
                let _ = writeln!(
                    out,
                    "== {} {}{status}",
                    clean(&log.instance_name),
                    clean(&log.step)
                );
            }
            if skipped > 0 {
                self.line_start(&mut out);
                let earlier = if offset == skipped { " earlier" } else { "" };
                let _ = writeln!(out, "== ({skipped} bytes of{earlier} output dropped)");
            }
            if !text.is_empty() {
                if self.escape {
                    out.push_str(&clean_block(text));
                } else {
                    out.push_str(text);
                }
                self.at_line_start = text.ends_with('\n');
            }
            // A step that ended after its header was printed gets its result below
            // its output.
            if ends_now && !is_new {
                self.line_start(&mut out);
                let _ = writeln!(out, "{}", log_header(log));
            }
            self.last = Some(key);
        }
        out
    }

    /// The JSON chunks for what is new in `logs`.
    pub(super) fn chunks(&mut self, logs: &[StepLog]) -> Vec<LogChunk> {
        let mut chunks = Vec::new();
        for log in logs {
            let key = (log.instance_id.clone(), log.step.clone());
            let is_new = !self.cursors.contains_key(&key);
            let cursor = self.cursors.entry(key).or_default();
            let (skipped, offset, text) = Self::advance(cursor, log);
            let running = log.state == "running";
            let ends_now = !running && !cursor.ended;
            if !is_new && text.is_empty() && skipped == 0 && !ends_now {
                continue;
            }
            cursor.ended = !running;
            chunks.push(LogChunk {
                instance_id: log.instance_id.clone(),
                instance_name: log.instance_name.clone(),
                step: log.step.clone(),
                state: log.state.clone(),
                exit_code: log.exit_code,
                message: log.message.clone(),
                offset,
                skipped_bytes: skipped,
                output: text.to_owned(),
            });
        }
        chunks
    }

    pub(super) fn line_start(&mut self, out: &mut String) {
        if !self.at_line_start {
            out.push('\n');
            self.at_line_start = true;
        }
    }
}

/// `== web-1 start (exit 0)`: instance, step, and how the step stands.
pub(super) fn log_header(log: &StepLog) -> String {
    let mut status = Vec::new();
    if log.state == "running" {
        status.push("running".to_owned());
    } else if let Some(code) = log.exit_code {
        status.push(format!("exit {code}"));
    } else {
        status.push(clean(&log.state).into_owned());
    }
    if let Some(message) = &log.message {
        status.push(clean(message).into_owned());
    }
    format!(
        "== {} {} ({})",
        clean(&log.instance_name),
        clean(&log.step),
        status.join("; ")
    )
}
