//! Request metrics in Prometheus text format, and the one log line per request.
//!
//! Written by hand rather than with a metrics crate: two families (a counter and a
//! latency histogram, labelled by method and route template) need little code, and
//! the route template (`/api/v1/apps/{app}`) keeps label cardinality bounded.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What was observed of one method on one route.
#[derive(Default)]
struct RouteStats {
    /// Requests answered, by status.
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// By method, then route template: nested so that a request already seen is
/// counted without allocating its labels again (every agent request passes here).
#[derive(Default)]
struct Inner {
    routes: BTreeMap<String, BTreeMap<String, RouteStats>>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(stats) = entry(&mut inner.routes, method).and_then(|routes| entry(routes, route))
        else {
            return;
        };
        *stats.statuses.entry(status).or_default() += 1;
        let histogram = &mut stats.latency;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The Prometheus text exposition of everything observed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(inner) = self.inner.lock() else {
            return out;
        };
        out.push_str("# HELP wharf_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE wharf_http_requests_total counter\n");
        for (method, routes) in &inner.routes {
            for (route, stats) in routes {
                for (status, count) in &stats.statuses {
                    let _ = writeln!(
                        out,
                        "wharf_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                        escape(route)
                    );
                }
            }
        }
        out.push_str("# HELP wharf_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE wharf_http_request_duration_seconds histogram\n");
        let latencies = inner.routes.iter().flat_map(|(method, routes)| {
            routes
                .iter()
                .map(move |(route, stats)| (method, route, &stats.latency))
        });
        for (method, route, h) in latencies {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "wharf_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "wharf_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "wharf_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "wharf_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

/// The value under `key`, inserted empty first if missing; the key is allocated
/// only then (`BTreeMap::entry` would take an owned key every time). Never `None`.
fn entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times the request, records it, and logs one line. Only the method,
/// the route template and the status are logged: never headers, bodies or query
/// strings, which may carry secrets.
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Both are cheap to keep: a standard method is a constant, and the matched
    // path is shared.
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let method = method.as_str();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics.observe(method, route, status, elapsed);
    let ms = format_args!("{:.1}", elapsed * 1000.0);
    // Agents' requests (heartbeats, polls, step reports: thousands a second with a
    // large fleet) are logged only at debug level, or when they fail; a line each
    // would cost more than answering them. Their counts and latencies are in the
    // metrics either way.
    if route.starts_with("/agent/") && status < 500 {
        tracing::debug!(method, route, status, ms = %ms, "request");
    } else {
        tracing::info!(method, route, status, ms = %ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe("GET", "/api/v1/apps", 200, 0.003);
        m.observe("GET", "/api/v1/apps", 200, 0.2);
        m.observe("POST", "/api/v1/apps", 409, 0.001);
        let text = m.render();
        assert!(text.contains(
            "wharf_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "wharf_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/apps\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "wharf_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/apps\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "wharf_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/apps\"} 1"
        ));
    }

    #[test]
    fn counts_each_status_of_a_route_and_lists_them_in_order() {
        let m = Metrics::default();
        m.observe("POST", "/api/v1/apps", 409, 0.001);
        m.observe("GET", "/api/v1/apps/{app}", 404, 0.001);
        m.observe("GET", "/api/v1/apps", 404, 0.001);
        m.observe("GET", "/api/v1/apps", 200, 0.001);
        m.observe("GET", "/api/v1/apps", 200, 0.001);
        let text = m.render();
        let counters: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("wharf_http_requests_total{"))
            .collect();
        assert_eq!(
            counters,
            [
                "wharf_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"200\"} 2",
                "wharf_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"404\"} 1",
                "wharf_http_requests_total{method=\"GET\",route=\"/api/v1/apps/{app}\",status=\"404\"} 1",
                "wharf_http_requests_total{method=\"POST\",route=\"/api/v1/apps\",status=\"409\"} 1",
            ]
        );
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("wharf_http_request_duration_seconds_count{"))
            .collect();
        assert_eq!(
            counts,
            [
                "wharf_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/apps\"} 3",
                "wharf_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/apps/{app}\"} 1",
                "wharf_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/apps\"} 1",
            ]
        );
    }
}
