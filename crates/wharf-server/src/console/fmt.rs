//! How the console shows times, durations and sizes. The same rules are in
//! `console.js`, which keeps relative times and running durations fresh.

use chrono::{DateTime, Utc};

/// A point in time as a page shows it: relative text ("3 min ago"), the exact time
/// as a tooltip, and the ISO form the script reads to keep the text fresh.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub rel: String,
    pub title: String,
}

impl When {
    pub fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rel: ago(at, now),
            title: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }

    pub fn opt(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Self> {
        at.map(|at| Self::new(at, now))
    }
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago", or the date.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    if secs < 0 {
        return "in the future".into();
    }
    match secs {
        0..=4 => "just now".into(),
        5..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        86_400..=2_592_000 => format!("{} d ago", secs / 86_400),
        _ => at.format("%Y-%m-%d").to_string(),
    }
}

/// A duration for people: "850 ms", "4.2 s", "3 min 12 s", "2 h 5 min".
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    if secs < 3600 {
        return format!("{} min {} s", secs / 60, secs % 60);
    }
    format!("{} h {} min", secs / 3600, (secs % 3600) / 60)
}

/// The time between two points, or from `start` until now while it runs.
pub fn span(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    let start = start?;
    let end = end.unwrap_or(now);
    Some(duration_ms((end - start).num_milliseconds()))
}

/// "512 B", "3.1 KiB", "1.0 MiB".
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n_f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n_f < KIB * KIB {
        format!("{:.1} KiB", n_f / KIB)
    } else {
        format!("{:.1} MiB", n_f / (KIB * KIB))
    }
}

/// A seconds count as an operator would write it: "0 s", "90 s", "10 min", "1 h".
pub fn secs(n: u32) -> String {
    match n {
        n if n >= 3600 && n % 3600 == 0 => format!("{} h", n / 3600),
        n if n >= 60 && n % 60 == 0 => format!("{} min", n / 60),
        n => format!("{n} s"),
    }
}

/// An image digest shortened for tables: `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn relative_times() {
        let now = Utc::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now - Duration::seconds(42), now), "42 s ago");
        assert_eq!(ago(now - Duration::minutes(5), now), "5 min ago");
        assert_eq!(ago(now - Duration::hours(3), now), "3 h ago");
        assert_eq!(ago(now - Duration::days(2), now), "2 d ago");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(4200), "4.2 s");
        assert_eq!(duration_ms(192_000), "3 min 12 s");
        assert_eq!(duration_ms(7_500_000), "2 h 5 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 + 100), "3.1 KiB");
        assert_eq!(secs(600), "10 min");
        assert_eq!(secs(90), "90 s");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
    }
}
