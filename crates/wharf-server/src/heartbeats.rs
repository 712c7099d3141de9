//! Group commit for agent heartbeats. With thousands of agents, one SQLite write
//! transaction per heartbeat (10,000 agents every 10 s: 1,000 a second) saturates
//! the single writer that claims and step reports also need. Heartbeats that
//! arrive while a write is under way queue here and go to the store together, in
//! one transaction. Each request still answers only once its heartbeat is stored,
//! so what a heartbeat means, and when an instance counts as online or offline,
//! does not change.

use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use wharf_store::{HeartbeatRecord, Store};

/// The most heartbeats written in one transaction, so one write stays short.
const MAX_BATCH: usize = 2048;

/// Why a heartbeat was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatError {
    /// The instance is gone (deleted meanwhile).
    NotFound,
    /// The store failed; it has been logged.
    Store,
}

type Waiter = oneshot::Sender<Result<(), HeartbeatError>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(HeartbeatRecord, Waiter)>,
    /// Whether a writer task is draining the queue now.
    writing: bool,
}

/// The queue of heartbeats waiting to be written, shared by every handler.
#[derive(Clone, Default)]
pub struct HeartbeatWriter {
    queue: Arc<Mutex<Queue>>,
}

impl HeartbeatWriter {
    /// Records a heartbeat together with any others that arrive meanwhile, and
    /// returns once it is stored.
    pub async fn record(
        &self,
        store: Arc<dyn Store>,
        beat: HeartbeatRecord,
    ) -> Result<(), HeartbeatError> {
        let (tx, rx) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push((beat, tx));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(drain(self.queue.clone(), store));
        }
        // A dropped sender means the writer task died (a panic): count it as a
        // store failure rather than waiting for ever.
        rx.await.unwrap_or(Err(HeartbeatError::Store))
    }
}

/// Writes queued heartbeats, a batch per transaction, until the queue is empty.
async fn drain(queue: Arc<Mutex<Queue>>, store: Arc<dyn Store>) {
    loop {
        let batch: Vec<(HeartbeatRecord, Waiter)> = {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.waiting.is_empty() {
                queue.writing = false;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..take).collect()
        };
        let (beats, waiters): (Vec<HeartbeatRecord>, Vec<Waiter>) = batch.into_iter().unzip();
        match store.instance_heartbeats(&beats).await {
            Ok(found) => {
                for (waiter, found) in waiters.into_iter().zip(found) {
                    let _ = waiter.send(if found {
                        Ok(())
                    } else {
                        Err(HeartbeatError::NotFound)
                    });
                }
            }
            Err(err) => {
                tracing::error!(error = ?err, heartbeats = beats.len(), "recording heartbeats failed");
                for waiter in waiters {
                    let _ = waiter.send(Err(HeartbeatError::Store));
                }
            }
        }
    }
}
