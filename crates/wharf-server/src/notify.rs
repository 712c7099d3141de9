//! Wake-ups without polling: one [`AgentWake`] per instance for agents waiting on
//! `GET /agent/v1/work`, and one `Notify` for the driver.
//!
//! `Notify::notify_one` stores a permit when nobody waits, so a wake-up that
//! arrives between an agent's store query and its wait is not lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// What an agent's long poll waits on: the wake-up, and which release's task the
/// driver dispatched to the instance, so that the woken poll hands that work out
/// without reading the store (a batch of 1,000 would otherwise be 1,000 reads).
#[derive(Default)]
pub struct AgentWake {
    notify: Notify,
    /// The release named by the last wake-up, if that wake-up named one release
    /// only: two dispatches that race leave none, and the poll then reads which
    /// task comes first.
    dispatched: Mutex<Option<String>>,
}

impl AgentWake {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.dispatched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes when the driver dispatched work to the instance (at once if it
    /// did since the last wait).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The release the driver dispatched to the instance since the last call, if
    /// it named exactly one.
    pub fn take_dispatched(&self) -> Option<String> {
        self.slot().take()
    }

    fn dispatched(&self, release_id: &str) {
        let mut slot = self.slot();
        *slot = match slot.take() {
            Some(other) if other != release_id => None,
            _ => Some(release_id.to_owned()),
        };
        drop(slot);
        self.notify.notify_one();
    }
}

#[derive(Clone)]
pub struct Wakeups {
    agents: Arc<Mutex<HashMap<String, Arc<AgentWake>>>>,
    driver: Arc<Notify>,
    /// Scaling groups whose hook command runs now, so that a pass never starts a
    /// second one beside it (hooks of one scaling group run one at a time, in order).
    hooks: Arc<Mutex<HashSet<String>>>,
    shutdown_tx: Arc<watch::Sender<bool>>,
    shutdown_rx: watch::Receiver<bool>,
}

impl Default for Wakeups {
    fn default() -> Self {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        Self {
            agents: Arc::default(),
            driver: Arc::default(),
            hooks: Arc::default(),
            shutdown_tx: Arc::new(shutdown_tx),
            shutdown_rx,
        }
    }
}

impl Wakeups {
    /// The handle an agent's long poll waits on.
    pub fn agent(&self, instance_id: &str) -> Arc<AgentWake> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.entry(instance_id.to_owned()).or_default().clone()
    }

    /// Tells a waiting agent (or its next poll) that a task of `release_id` was
    /// dispatched to it.
    pub fn wake_agent(&self, instance_id: &str, release_id: &str) {
        self.agent(instance_id).dispatched(release_id);
    }

    /// Asks the driver to reconcile now rather than at its next tick.
    pub fn wake_driver(&self) {
        self.driver.notify_one();
    }

    pub fn driver(&self) -> Arc<Notify> {
        self.driver.clone()
    }

    /// Marks a scaling group's hook as running; false if one runs already.
    pub fn hook_start(&self, scaling_group: &str) -> bool {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        hooks.insert(scaling_group.to_owned())
    }

    /// Marks a scaling group's hook as ended.
    pub fn hook_end(&self, scaling_group: &str) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        hooks.remove(scaling_group);
    }

    /// Ends long polls and the driver loop.
    pub fn shut_down(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Completes when the server shuts down.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown_rx.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// How long step reports may be held back after a batch was dispatched, at most:
/// the polls of agents that never come (offline, restarting) must not hold them
/// longer.
pub const DISPATCH_FIRST_FOR: std::time::Duration = std::time::Duration::from_millis(250);

/// Puts handing out a dispatched batch's work before step reports. When a batch
/// starts, all its agents' polls wake at once, and the first agents to get their
/// work report their first steps at once too; answered in arrival order, those
/// reports take the CPU from the polls still waiting, and the batch's last agents
/// get their work late. Holding reports back until the batch's work is handed
/// out (or [`DISPATCH_FIRST_FOR`] passed) costs a batch nothing: it ends only once
/// its last agent has its work and has reported anyway.
#[derive(Clone, Default)]
pub struct DispatchFirst {
    inner: Arc<Mutex<Outstanding>>,
    /// Signalled when the work is handed out or the time is up.
    open: Arc<Notify>,
}

#[derive(Default)]
struct Outstanding {
    /// Work of dispatched batches not handed out yet.
    unanswered: usize,
    /// When reports go ahead even if some work is still not handed out.
    until: Option<tokio::time::Instant>,
}

impl DispatchFirst {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outstanding> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch of `tasks` was dispatched: reports wait for their work to be handed
    /// out.
    pub fn dispatched(&self, tasks: usize) {
        if tasks == 0 {
            return;
        }
        let mut outstanding = self.lock();
        outstanding.unanswered += tasks;
        outstanding.until = Some(tokio::time::Instant::now() + DISPATCH_FIRST_FOR);
    }

    /// A poll was answered with work.
    pub fn handed_out(&self) {
        let mut outstanding = self.lock();
        if outstanding.unanswered == 0 {
            return;
        }
        outstanding.unanswered -= 1;
        if outstanding.unanswered == 0 {
            outstanding.until = None;
            drop(outstanding);
            self.open.notify_waiters();
        }
    }

    /// Waits while dispatched work is not handed out, for at most the time left
    /// of [`DISPATCH_FIRST_FOR`]; returns at once when none are.
    pub async fn reports_may_go(&self) {
        loop {
            // Registered before the look, so that a `handed_out` between the look
            // and the wait is not missed.
            let opened = self.open.notified();
            let until = {
                let mut outstanding = self.lock();
                match outstanding.until {
                    Some(until) if tokio::time::Instant::now() < until => until,
                    _ => {
                        // The time is up: polls that did not come are no longer
                        // waited for.
                        outstanding.unanswered = 0;
                        outstanding.until = None;
                        return;
                    }
                }
            };
            tokio::select! {
                _ = opened => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_names_the_release_dispatched_once() {
        let wakeups = Wakeups::default();
        let wake = wakeups.agent("i-1");
        wakeups.wake_agent("i-1", "r-1");
        // The permit is kept for a poll that was not waiting yet.
        wake.notified().await;
        assert_eq!(wake.take_dispatched(), Some("r-1".to_owned()));
        assert_eq!(wake.take_dispatched(), None);
        // The same release twice is still that release.
        wakeups.wake_agent("i-1", "r-2");
        wakeups.wake_agent("i-1", "r-2");
        assert_eq!(wake.take_dispatched(), Some("r-2".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn racing_dispatches_of_two_releases_name_neither() {
        let wakeups = Wakeups::default();
        let wake = wakeups.agent("i-1");
        wakeups.wake_agent("i-1", "r-1");
        wakeups.wake_agent("i-1", "r-2");
        wake.notified().await;
        // The poll reads which task comes first instead.
        assert_eq!(wake.take_dispatched(), None);
        // Another instance's wake-up is its own.
        wakeups.wake_agent("i-2", "r-3");
        assert_eq!(wake.take_dispatched(), None);
        assert_eq!(
            wakeups.agent("i-2").take_dispatched(),
            Some("r-3".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reports_go_at_once_when_nothing_was_dispatched() {
        let gate = DispatchFirst::default();
        let started = tokio::time::Instant::now();
        gate.reports_may_go().await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_wait_for_the_last_hand_out_of_a_dispatched_batch() {
        let gate = DispatchFirst::default();
        gate.dispatched(2);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move {
                let started = tokio::time::Instant::now();
                gate.reports_may_go().await;
                started.elapsed()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        gate.handed_out();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "one hand-out is still outstanding");
        gate.handed_out();
        let waited = waiting.await.expect("the waiting report");
        assert_eq!(waited, std::time::Duration::from_millis(20));
        // Nothing is outstanding any more.
        let started = tokio::time::Instant::now();
        gate.reports_may_go().await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_that_never_come_hold_reports_back_for_a_bounded_time() {
        let gate = DispatchFirst::default();
        gate.dispatched(3);
        gate.handed_out();
        let started = tokio::time::Instant::now();
        gate.reports_may_go().await;
        assert_eq!(started.elapsed(), DISPATCH_FIRST_FOR);
        // The missing hand-outs are forgotten: the next report does not wait.
        let started = tokio::time::Instant::now();
        gate.reports_may_go().await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }
}
