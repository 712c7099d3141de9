//! The table the benchmark prints: one row per figure, with its baseline, the ratio
//! and the target.

/// One measured figure.
pub struct Row {
    pub name: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
}

/// All figures of one invocation, printed at the end.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds a figure without a baseline.
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<String>, target: &str) {
        let row = Row {
            name: name.into(),
            value: value.into(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: target.into(),
        };
        // Printed at once too, so that a run that fails later still shows it.
        println!("  {}: {}", row.name, row.value);
        self.rows.push(row);
    }

    /// Adds a duration figure with its baseline and their ratio (both in ms).
    pub fn add_ratio(
        &mut self,
        name: impl Into<String>,
        value_ms: f64,
        baseline_ms: f64,
        target: &str,
    ) {
        let row = Row {
            name: name.into(),
            value: ms(value_ms),
            baseline: ms(baseline_ms),
            ratio: if baseline_ms > 0.0 {
                format!("{:.2}x", value_ms / baseline_ms)
            } else {
                "-".into()
            },
            target: target.into(),
        };
        println!("  {}: {} (baseline {})", row.name, row.value, row.baseline);
        self.rows.push(row);
    }

    /// Prints the table as Markdown, so it can go into BENCHMARKS.md as it is.
    pub fn print(&self) {
        println!();
        println!("| figure | measured | baseline | ratio | target |");
        println!("| --- | ---: | ---: | ---: | --- |");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.name, r.value, r.baseline, r.ratio, r.target
            );
        }
    }
}

/// A duration in milliseconds, with a precision that suits its size.
pub fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// The `q`-quantile (0..=1) of `values`, in the values' unit; 0 when empty.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}

/// The median of `values`.
pub fn median(values: &mut [f64]) -> f64 {
    quantile(values, 0.5)
}
