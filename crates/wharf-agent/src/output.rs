//! Bounded, streamable output of one step: lines go in, chunks come out for streaming, and
//! only the last `retained_bytes` are ever held in memory.
//!
//! The producer (a script's stdout and stderr readers, or the image pull) pushes whole
//! lines; they interleave by line in arrival order. A single consumer calls
//! [`OutputSink::next_chunk`] to stream "everything new since the last take" to the server,
//! and [`OutputSink::summary`] at the end for the retained tail and the dropped count.
//!
//! There is no channel between producer and consumer on purpose: the retained tail *is*
//! the buffer. A slow or disconnected consumer therefore never blocks the script (which
//! would stall it on a full pipe) and never grows memory; it just finds that some bytes
//! were evicted before it took them, which its chunk reports as `skipped_bytes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Default amount of output kept per step: the last 1 MiB.
pub const DEFAULT_RETAINED_BYTES: usize = 1024 * 1024;

/// Default cap on one line; the rest of a longer line is dropped (and counted).
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024;

/// Limits of one step's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    /// The most output (in bytes, newlines included) retained at any time.
    pub retained_bytes: usize,
    /// The longest line kept (in bytes, without its newline); longer lines are cut.
    pub max_line_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            retained_bytes: DEFAULT_RETAINED_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// New output handed to the streaming consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// Byte offset of `text` in the step's kept output stream (cut bytes are not part of
    /// that stream). Not what the agent sends as an `Output` report's offset, which
    /// counts the cut bytes too (see `Agent::stream_output`).
    pub offset: u64,
    /// Bytes that were evicted before the consumer took them; they lie just before
    /// `offset` and are lost from the stream.
    pub skipped_bytes: u64,
    /// Whole lines, each ending with `\n`.
    pub text: String,
}

/// What remains of a step's output at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSummary {
    /// The retained tail: whole lines, each ending with `\n`, at most `retained_bytes`.
    pub tail: String,
    /// Bytes not in `tail`: lines evicted to honour the retention limit, plus the parts of
    /// overlong lines that were cut.
    pub dropped_bytes: u64,
    /// Every byte the step produced (what is in `tail` plus `dropped_bytes`).
    pub total_bytes: u64,
}

/// A cheap, cloneable handle to one step's output buffer.
#[derive(Clone, Debug)]
pub struct OutputSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: OutputLimits,
    state: Mutex<State>,
    /// Wakes the single streaming consumer when lines arrive or the sink closes. `Notify`
    /// stores one permit, so a wake-up sent while the consumer is busy is not lost.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Retained lines with the stream offset of their first byte, oldest first.
    lines: VecDeque<(u64, String)>,
    retained_bytes: usize,
    /// Offset just past the last retained line: every byte ever kept from a line.
    end_offset: u64,
    evicted_bytes: u64,
    cut_bytes: u64,
    /// Stream offset up to which the consumer has taken output.
    taken_offset: u64,
    closed: bool,
}

impl State {
    fn first_offset(&self) -> u64 {
        self.lines
            .front()
            .map_or(self.end_offset, |(offset, _)| *offset)
    }
}

impl Default for OutputSink {
    fn default() -> Self {
        Self::new(OutputLimits::default())
    }
}

impl OutputSink {
    /// Creates an empty sink. A `max_line_bytes` above `retained_bytes` is lowered to it,
    /// so that one line can always be retained.
    pub fn new(limits: OutputLimits) -> Self {
        let limits = OutputLimits {
            retained_bytes: limits.retained_bytes.max(1),
            max_line_bytes: limits
                .max_line_bytes
                .clamp(1, limits.retained_bytes.max(1).saturating_sub(1).max(1)),
        };
        Self {
            inner: Arc::new(Inner {
                limits,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> OutputLimits {
        self.inner.limits
    }

    /// Appends one line (without its trailing newline). A line longer than
    /// `max_line_bytes` is cut and the cut bytes are counted as dropped.
    pub fn push_line(&self, line: &[u8]) {
        self.push_cut_line(line, 0);
    }

    /// Appends one line of which the reader already discarded `discarded` bytes past
    /// `head` (readers cap lines while reading so that an endless line cannot use
    /// unbounded memory). `head` is cut further if it exceeds `max_line_bytes`.
    pub fn push_cut_line(&self, head: &[u8], discarded: u64) {
        let max = self.inner.limits.max_line_bytes;
        let mut keep = head.len().min(max);
        let mut cut = discarded + (head.len() - keep) as u64;
        if cut > 0 {
            // Cutting inside a multi-byte UTF-8 character would leave a replacement
            // character behind; back off to the start of that character instead.
            let mut back = 0;
            while back < 3 && keep > 0 && keep < head.len() && is_continuation(head[keep]) {
                keep -= 1;
                back += 1;
            }
            cut += back as u64;
        }
        let mut text = String::from_utf8_lossy(&head[..keep]).into_owned();
        text.push('\n');

        let mut state = self.lock();
        state.cut_bytes += cut;
        let offset = state.end_offset;
        state.end_offset += text.len() as u64;
        state.retained_bytes += text.len();
        state.lines.push_back((offset, text));
        while state.retained_bytes > self.inner.limits.retained_bytes {
            match state.lines.pop_front() {
                Some((_, evicted)) => {
                    state.retained_bytes -= evicted.len();
                    state.evicted_bytes += evicted.len() as u64;
                }
                None => break,
            }
        }
        drop(state);
        self.inner.changed.notify_one();
    }

    /// Counts bytes that were lost without becoming a line (for example output a reader
    /// could not decode or had to abandon).
    pub fn record_dropped(&self, bytes: u64) {
        self.lock().cut_bytes += bytes;
    }

    /// Marks the end of the output: once everything is taken, [`Self::next_chunk`]
    /// returns `None`. Lines pushed after closing are still retained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.changed.notify_one();
    }

    /// Takes the output added since the last take, at most about `max_bytes` of it (whole
    /// lines; at least one line even if that line is longer). `None` if nothing is new.
    pub fn take_new(&self, max_bytes: usize) -> Option<OutputChunk> {
        let mut state = self.lock();
        let first = state.first_offset();
        let mut skipped_bytes = 0;
        if state.taken_offset < first {
            skipped_bytes = first - state.taken_offset;
            state.taken_offset = first;
        }
        if state.taken_offset >= state.end_offset {
            // A gap is normally reported with the text after it; with nothing retained
            // (possible only with tiny limits) it is reported alone.
            return (skipped_bytes > 0).then(|| OutputChunk {
                offset: state.taken_offset,
                skipped_bytes,
                text: String::new(),
            });
        }
        let taken = state.taken_offset;
        let start = state.lines.partition_point(|(offset, _)| *offset < taken);
        let mut text = String::new();
        for (_, line) in state.lines.range(start..) {
            if !text.is_empty() && text.len() + line.len() > max_bytes {
                break;
            }
            text.push_str(line);
        }
        state.taken_offset = taken + text.len() as u64;
        Some(OutputChunk {
            offset: taken,
            skipped_bytes,
            text,
        })
    }

    /// Waits for new output and takes it (see [`Self::take_new`]); `None` once the sink
    /// is closed and everything has been taken. Meant for a single consumer.
    pub async fn next_chunk(&self, max_bytes: usize) -> Option<OutputChunk> {
        loop {
            if let Some(chunk) = self.take_new(max_bytes) {
                return Some(chunk);
            }
            if self.lock().closed {
                return None;
            }
            self.inner.changed.notified().await;
        }
    }

    /// Bytes lost without ever being retained: the cut parts of overlong lines and output
    /// recorded with [`Self::record_dropped`]. Unlike evictions (reported per chunk as
    /// `skipped_bytes`), these never reach a chunk, so a streaming consumer adds them to
    /// what it reports as dropped. Cheap: no copy of the retained output.
    pub fn cut_bytes(&self) -> u64 {
        self.lock().cut_bytes
    }

    /// The retained tail and the byte counts, as they stand now.
    pub fn summary(&self) -> OutputSummary {
        let state = self.lock();
        let tail: String = state.lines.iter().map(|(_, line)| line.as_str()).collect();
        let dropped_bytes = state.evicted_bytes + state.cut_bytes;
        OutputSummary {
            total_bytes: tail.len() as u64 + dropped_bytes,
            tail,
            dropped_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent in a way
        // that matters for log output, so a poisoned lock is simply taken over.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(retained_bytes: usize, max_line_bytes: usize) -> OutputSink {
        OutputSink::new(OutputLimits {
            retained_bytes,
            max_line_bytes,
        })
    }

    #[test]
    fn keeps_lines_in_order_with_newlines() {
        let out = OutputSink::default();
        out.push_line(b"one");
        out.push_line(b"two");
        let summary = out.summary();
        assert_eq!(summary.tail, "one\ntwo\n");
        assert_eq!(summary.dropped_bytes, 0);
        assert_eq!(summary.total_bytes, 8);
    }

    #[test]
    fn evicts_whole_old_lines_beyond_the_retention_limit() {
        let out = sink(10, 8);
        for line in ["aaaa", "bbbb", "cccc"] {
            out.push_line(line.as_bytes());
        }
        let summary = out.summary();
        assert_eq!(summary.tail, "bbbb\ncccc\n");
        assert_eq!(summary.dropped_bytes, 5);
        assert_eq!(summary.total_bytes, 15);
    }

    #[test]
    fn cuts_long_lines_and_counts_the_cut() {
        let out = sink(100, 4);
        out.push_line(b"abcdefgh");
        out.push_cut_line(b"xy", 7);
        let summary = out.summary();
        assert_eq!(summary.tail, "abcd\nxy\n");
        assert_eq!(summary.dropped_bytes, 4 + 7);
        assert_eq!(out.cut_bytes(), 4 + 7);
        out.record_dropped(5);
        assert_eq!(out.cut_bytes(), 4 + 7 + 5);
    }

    #[test]
    fn cut_does_not_split_a_utf8_character() {
        let out = sink(100, 4);
        // "abé€" is 2 + 2 + 3 bytes: a cut at 4 falls between characters.
        out.push_line("abé€".as_bytes());
        // "abcé" is 3 + 2 bytes: a cut at 4 would split "é", so it moves to 3.
        out.push_line("abcé".as_bytes());
        let summary = out.summary();
        assert_eq!(summary.tail, "abé\nabc\n");
        assert_eq!(summary.dropped_bytes, 3 + 2);
    }

    #[test]
    fn take_new_returns_only_unseen_lines_and_reports_gaps() {
        let out = sink(10, 8);
        out.push_line(b"aaaa");
        let first = out.take_new(1024);
        assert_eq!(
            first,
            Some(OutputChunk {
                offset: 0,
                skipped_bytes: 0,
                text: "aaaa\n".into()
            })
        );
        assert_eq!(out.take_new(1024), None);
        for line in ["bbbb", "cccc", "dddd"] {
            out.push_line(line.as_bytes());
        }
        // "bbbb\n" was evicted before anyone took it.
        let second = out.take_new(1024);
        assert_eq!(
            second,
            Some(OutputChunk {
                offset: 10,
                skipped_bytes: 5,
                text: "cccc\ndddd\n".into()
            })
        );
    }

    #[test]
    fn take_new_honours_max_bytes_in_whole_lines() {
        let out = OutputSink::default();
        for line in ["aaaa", "bbbb", "cccc"] {
            out.push_line(line.as_bytes());
        }
        let chunk = out.take_new(12).map(|c| c.text);
        assert_eq!(chunk.as_deref(), Some("aaaa\nbbbb\n"));
        let chunk = out.take_new(12).map(|c| (c.offset, c.text));
        assert_eq!(chunk, Some((10, "cccc\n".to_string())));
    }

    #[tokio::test]
    async fn next_chunk_waits_for_lines_and_ends_after_close() {
        let out = OutputSink::default();
        let consumer = {
            let out = out.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                while let Some(chunk) = out.next_chunk(4).await {
                    text.push_str(&chunk.text);
                }
                text
            })
        };
        for i in 0..100 {
            out.push_line(format!("line {i}").as_bytes());
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        out.close();
        let text = consumer.await.expect("consumer task");
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }
}
