//! Wake-ups without polling: one `Notify` per instance for agents waiting on
//! `GET /agent/v1/work`, and one for the driver.
//!
//! `Notify::notify_one` stores a permit when nobody waits, so a wake-up that
//! arrives between an agent's store query and its wait is not lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

#[derive(Clone)]
pub struct Wakeups {
    agents: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
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
    pub fn agent(&self, instance_id: &str) -> Arc<Notify> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.entry(instance_id.to_owned()).or_default().clone()
    }

    /// Tells a waiting agent (or its next poll) that it may have work.
    pub fn wake_agent(&self, instance_id: &str) {
        self.agent(instance_id).notify_one();
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
