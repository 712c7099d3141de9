//! Small helpers every fleet test uses: timing its phases (printed as it goes, so
//! the CI log shows where the time went) and failing with the fleet's diagnostics.

use crate::fleet::Fleet;
use std::time::{Duration, Instant};

/// Times the phases of a test and prints them as it goes.
pub struct Phases {
    test: &'static str,
    started: Instant,
    last: Instant,
    lines: Vec<String>,
}

impl Phases {
    /// Starts timing; `test` prefixes every printed line.
    pub fn new(test: &'static str) -> Self {
        let now = Instant::now();
        Self {
            test,
            started: now,
            last: now,
            lines: Vec::new(),
        }
    }

    /// Ends the phase `name`: prints and keeps its duration, and returns it.
    pub fn done(&mut self, name: &str) -> Duration {
        let took = self.last.elapsed();
        let line = format!("{name}: {:.1}s", took.as_secs_f64());
        eprintln!("{}: {line}", self.test);
        self.lines.push(line);
        self.last = Instant::now();
        took
    }

    /// Prints every phase on one line with the total.
    pub fn finish(self) {
        eprintln!(
            "{}: {} | total {:.1}s",
            self.test,
            self.lines.join(", "),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The value of `result`, or a panic with the error and the fleet's diagnostics
/// (server log, each host's agent and engine logs).
pub fn check<T>(result: anyhow::Result<T>, fleet: &Fleet) -> T {
    result.unwrap_or_else(|error| panic!("{error:#}\n{}", fleet.diagnostics()))
}
