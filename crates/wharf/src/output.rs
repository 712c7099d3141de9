//! Everything the CLI writes: JSON or readable tables and key-value blocks on stdout,
//! notes on stderr, and the escaping that keeps server-provided strings from
//! controlling the terminal.

use crate::error::CommandError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables and key-value blocks for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// The one place that writes to stdout and stderr.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub format: OutputFormat,
}

impl Ui {
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// Prints `value` as pretty JSON in JSON mode, or what `render` makes of it in
    /// table mode.
    pub fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> Result<(), CommandError> {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => self.stdout(&render(value)),
        }
    }

    /// Whether results are printed for people (tables), not as JSON.
    pub fn is_table(&self) -> bool {
        self.format == OutputFormat::Table
    }

    /// Prints `value` as pretty JSON on stdout, whatever the format.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CommandError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|err| CommandError::Internal(err.into()))?;
        self.stdout(&text)
    }

    /// Writes `text` on stdout, adding a final newline when it has none.
    pub fn stdout(&self, text: &str) -> Result<(), CommandError> {
        write_text(&mut std::io::stdout().lock(), text)
    }

    /// Writes a note for people on stderr: never data a script would parse.
    pub fn note(&self, text: &str) -> Result<(), CommandError> {
        write_text(&mut std::io::stderr().lock(), text)
    }
}

fn write_text(out: &mut impl Write, text: &str) -> Result<(), CommandError> {
    let result = if text.is_empty() || text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
    };
    result
        .and_then(|()| out.flush())
        .map_err(CommandError::output)
}

/// Whether a character must not reach the terminal as it is: C0 and C1 controls
/// (escape sequences start with them) and the invisible formatting characters that
/// reorder or hide text (bidirectional overrides, zero-width characters).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}')
}

/// Escapes every unsafe character of a one-line value, newlines and tabs included,
/// as Rust escapes (`\n`, `\u{1b}`).
pub fn clean(value: &str) -> Cow<'_, str> {
    escape(value, |_| false)
}

/// Like [`clean`] but keeps newlines and tabs, for multi-line text such as scripts.
pub fn clean_block(value: &str) -> Cow<'_, str> {
    escape(value, |c| c == '\n' || c == '\t')
}

fn escape(value: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !value.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if is_unsafe(c) && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A table with a header row, columns aligned on character counts. Every cell is
/// escaped with [`clean`] as it is added.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| clean(c.as_ref()).into_owned())
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header = self
            .header
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{:pad$}  ", "");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A block of `Key:  value` lines with aligned values; values are escaped with
/// [`clean`].
#[derive(Default)]
pub struct Fields {
    lines: Vec<(&'static str, String)>,
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, key: &'static str, value: impl AsRef<str>) -> &mut Self {
        self.lines.push((key, clean(value.as_ref()).into_owned()));
        self
    }

    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(k, _)| k.chars().count() + 1)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.lines {
            let label = format!("{key}:");
            let _ = writeln!(out, "{label:width$}  {value}");
        }
        out
    }
}

/// A titled, indented block of multi-line text (a script), escaped with
/// [`clean_block`].
pub fn text_block(title: &str, text: &str) -> String {
    let mut out = format!("{title}:\n");
    if text.is_empty() {
        out.push_str("    (empty)\n");
    }
    for line in clean_block(text).lines() {
        let _ = writeln!(out, "    {line}");
    }
    out
}

/// A timestamp as people read it, to the second.
pub fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional value, or `-`.
pub fn or_dash(value: Option<&str>) -> &str {
    match value {
        Some(v) if !v.is_empty() => v,
        _ => "-",
    }
}

/// A list joined with commas, or `-`.
pub fn list(values: &[String]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.join(", ")
    }
}

pub fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_terminal_controls() {
        assert_eq!(clean("web"), "web");
        assert_eq!(clean("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(clean("two\nlines\r"), "two\\nlines\\r");
        assert_eq!(clean("bell\u{7}\u{9b}"), "bell\\u{7}\\u{9b}");
        assert_eq!(clean("evil\u{202E}txt"), "evil\\u{202e}txt");
        assert_eq!(clean("café ✓"), "café ✓");
    }

    #[test]
    fn clean_block_keeps_newlines_and_tabs_only() {
        assert_eq!(clean_block("a\n\tb\u{1b}c\r\n"), "a\n\tb\\u{1b}c\\r\n");
    }

    #[test]
    fn table_aligns_columns_and_escapes_cells() {
        let mut table = Table::new(&["NAME", "DESCRIPTION"]);
        table.row(["web", "the site"]);
        table.row(["a\u{1b}b", ""]);
        table.row(["longer-name", "x"]);
        assert_eq!(
            table.render(),
            "NAME         DESCRIPTION\n\
             web          the site\n\
             a\\u{1b}b\n\
             longer-name  x\n"
        );
    }

    #[test]
    fn fields_align_values() {
        let mut fields = Fields::new();
        fields.add("Name", "web").add("Description", "x\ny");
        assert_eq!(fields.render(), "Name:         web\nDescription:  x\\ny\n");
    }

    #[test]
    fn text_block_indents_and_escapes() {
        assert_eq!(
            text_block("Start script", "echo hi\n\u{1b}]0;x\n"),
            "Start script:\n    echo hi\n    \\u{1b}]0;x\n"
        );
        assert_eq!(text_block("Stop script", ""), "Stop script:\n    (empty)\n");
    }
}
