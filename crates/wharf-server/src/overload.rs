//! Keeping the server answering under more than it can take: a bound on the
//! requests handled at once (503 beyond it), and per-address budgets of failed
//! sign-ins and registrations (429 beyond them), with rejected secrets remembered
//! so that a flood of bad credentials reaches the store a few times, not once per
//! request.
//!
//! Only failures count against an address: a fleet behind one NAT address
//! registers and heartbeats from that address by the thousand, and must not be
//! slowed; a client that keeps presenting secrets the store does not know is the
//! one to stop.

use crate::recent::RecentMap;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Requests handled at once, long polls aside (a waiting poll holds no slot: an
/// agent's poll waits for work for tens of seconds, and each agent has one).
/// With 10,000 agents a batch of 1,000 makes about as many reports at once, a
/// few hundred heartbeats are in flight; beyond this the server answers 503
/// rather than queueing without bound.
pub const MAX_IN_FLIGHT: usize = 8192;

/// The path of agents' long polls, which the in-flight bound does not count.
pub const LONG_POLL_PATH: &str = "/agent/v1/work";

/// Failures an address may have in one [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: u32 = 30;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a secret the store refused is refused again without asking it. API
/// tokens and agent credentials are 256-bit random values, so a refused one
/// never becomes valid later; an expired or used-up registration token stays so.
const REJECTED_KEPT_FOR: Duration = Duration::from_secs(300);
/// The most addresses tracked; past it the oldest windows are forgotten.
const MAX_TRACKED: usize = 100_000;

/// The client's address, as the connection gave it.
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The client's address as an extractor; `None` where no connection gave one
/// (handler tests that call the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(peer_ip(parts)))
    }
}

/// Failures per address in fixed windows.
#[derive(Debug)]
pub struct FailureBudget {
    what: &'static str,
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureBudget {
    pub fn new(what: &'static str, max: u32, window: Duration) -> Self {
        Self {
            what,
            max,
            window,
            windows: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refused if `ip` used up its failures in the current window.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = ip else { return Ok(()) };
        let windows = self.lock();
        match windows.get(&ip) {
            Some((started, failures))
                if *failures >= self.max && started.elapsed() < self.window =>
            {
                Err(Refusal::TooMany {
                    what: self.what,
                    retry_after: self.window.saturating_sub(started.elapsed()),
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `ip`.
    pub fn record(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut windows = self.lock();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, (started, _)| started.elapsed() < self.window);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The kinds of secret a client presents. A secret refused as one kind may be
/// valid as another (an admin token sent as an agent credential), so refusals
/// are remembered per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    ApiToken,
    AgentCredential,
    RegistrationToken,
}

impl Secret {
    fn key(self, hash: &str) -> String {
        let kind = match self {
            Secret::ApiToken => "api",
            Secret::AgentCredential => "agent",
            Secret::RegistrationToken => "registration",
        };
        format!("{kind}:{hash}")
    }
}

/// Why a secret was refused before the store was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The store refused this secret (of this kind) recently.
    Rejected(Secret),
    /// The address used up its failures; it may try again after `retry_after`.
    TooMany {
        what: &'static str,
        retry_after: Duration,
    },
}

/// What stands between unauthenticated requests and the store.
pub struct Guard {
    /// Failed API and agent authentications per address.
    pub failed_auth: FailureBudget,
    /// Refused registrations per address.
    pub failed_registrations: FailureBudget,
    /// Hashes of secrets the store refused recently.
    rejected: RecentMap<()>,
    /// Slots of [`shed`].
    pub in_flight: Arc<Semaphore>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            failed_auth: FailureBudget::new("failed authentications", MAX_FAILURES, FAILURE_WINDOW),
            failed_registrations: FailureBudget::new(
                "refused registrations",
                MAX_FAILURES,
                FAILURE_WINDOW,
            ),
            rejected: RecentMap::new(REJECTED_KEPT_FOR, MAX_TRACKED),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Guard {
    /// Before the store is asked about the secret whose hash is `hash`: refuses
    /// it at once if the store refused it recently (counting a failure), or if
    /// the address used up its failures.
    pub fn before_lookup(
        &self,
        secret: Secret,
        ip: Option<IpAddr>,
        hash: &str,
    ) -> Result<(), Refusal> {
        let budget = self.budget(secret);
        if self.rejected.get(&secret.key(hash)).is_some() {
            budget.record(ip);
            return Err(Refusal::Rejected(secret));
        }
        budget.check(ip)
    }

    /// After the store refused the secret whose hash is `hash`.
    pub fn refused(&self, secret: Secret, ip: Option<IpAddr>, hash: &str) {
        self.rejected.insert(&secret.key(hash), ());
        self.budget(secret).record(ip);
    }

    /// The failure budget a kind of secret counts against.
    pub fn budget(&self, secret: Secret) -> &FailureBudget {
        match secret {
            Secret::ApiToken | Secret::AgentCredential => &self.failed_auth,
            Secret::RegistrationToken => &self.failed_registrations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn an_address_is_refused_after_its_failures_and_only_it() {
        let budget = FailureBudget::new("failures", 3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(budget.check(ip(2)).is_ok());
            budget.record(ip(2));
        }
        let refused = budget.check(ip(2)).unwrap_err();
        assert!(
            matches!(refused, Refusal::TooMany { retry_after, .. } if retry_after <= Duration::from_secs(60)),
            "{refused:?}"
        );
        assert!(
            budget.check(ip(1)).is_ok(),
            "another address is not refused"
        );
        assert!(budget.check(None).is_ok());
    }

    #[test]
    fn a_new_window_forgets_the_failures() {
        let budget = FailureBudget::new("failures", 1, Duration::from_millis(50));
        budget.record(ip(2));
        assert!(budget.check(ip(2)).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(budget.check(ip(2)).is_ok());
    }

    #[test]
    fn a_refused_secret_is_refused_again_without_the_store() {
        let guard = Guard::default();
        let api = Secret::ApiToken;
        assert!(guard.before_lookup(api, ip(2), "h1").is_ok());
        guard.refused(api, ip(2), "h1");
        let again = guard.before_lookup(api, ip(3), "h1").unwrap_err();
        assert_eq!(again, Refusal::Rejected(api));
        assert!(guard.before_lookup(api, ip(3), "h2").is_ok());
        // Refused as an agent credential says nothing of it as an API token.
        guard.refused(Secret::AgentCredential, ip(4), "h3");
        assert!(guard.before_lookup(api, ip(4), "h3").is_ok());
    }
}
