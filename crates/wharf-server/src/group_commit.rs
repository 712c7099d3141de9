//! Group commit for the writes agents cause. SQLite has one writer; with thousands
//! of agents, one transaction per heartbeat or step report queues them behind
//! each other (10,000 agents send 1,000 heartbeats a second, and a batch of 1,000
//! instances makes some 7,000 reports). Writes that arrive while
//! a transaction is under way queue here and go to the store together, in one
//! transaction. Each request still answers only once its own write is stored, with
//! that write's own result, so nothing an agent or the driver sees changes; a
//! write waits at most for the transaction before it.

use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wharf_store::{AgentWrite, AgentWritten, HeartbeatRecord, Store, StoreResult};

/// The most writes in one transaction, so that one transaction stays short.
const MAX_BATCH: usize = 2048;

/// A kind of write that can be stored many at a time.
pub trait BatchWrite: Send + Sized + 'static {
    /// What one write answers.
    type Output: Send + 'static;
    /// What the writes are, for the log when a batch fails.
    const WHAT: &'static str;
    /// Stores `batch` in one go; answers each write in order.
    fn write_batch(
        store: &dyn Store,
        batch: Vec<Self>,
    ) -> BoxFuture<'_, StoreResult<Vec<Self::Output>>>;
}

/// A heartbeat answers whether its instance exists.
impl BatchWrite for HeartbeatRecord {
    type Output = bool;
    const WHAT: &'static str = "heartbeats";
    fn write_batch(store: &dyn Store, batch: Vec<Self>) -> BoxFuture<'_, StoreResult<Vec<bool>>> {
        Box::pin(async move { store.instance_heartbeats(&batch).await })
    }
}

/// Step reports answer as their single-call store methods would.
impl BatchWrite for AgentWrite {
    type Output = StoreResult<AgentWritten>;
    const WHAT: &'static str = "agent reports";
    fn write_batch(
        store: &dyn Store,
        batch: Vec<Self>,
    ) -> BoxFuture<'_, StoreResult<Vec<Self::Output>>> {
        store.agent_writes(batch)
    }
}

/// The batch a write was in could not be stored (logged); nothing of it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailed {
    /// Why trying again later may succeed, when it may (the store was stalled,
    /// full or overloaded: `StoreError::transient_reason`).
    pub transient: Option<String>,
}

impl BatchFailed {
    /// A write whose writer task died without an answer (a bug).
    fn lost() -> Self {
        Self { transient: None }
    }
}

type Waiter<W> = oneshot::Sender<Result<<W as BatchWrite>::Output, BatchFailed>>;

struct Queue<W: BatchWrite> {
    /// Writes not yet taken into a transaction, with when each was queued.
    waiting: Vec<(Instant, W, Waiter<W>)>,
    /// Whether a writer task is draining the queue now.
    writing: bool,
    /// When the oldest write of the transaction under way was queued.
    in_flight_since: Option<Instant>,
    /// Whether the last transaction failed (and none succeeded since).
    failing: bool,
}

/// How the queue fares: what the server's liveness judgement needs to know whether
/// heartbeats can be stored at all (`state::Hearing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHealth {
    /// How long the oldest write not yet stored has waited (zero when none waits).
    pub backlog_age: Duration,
    /// Whether the last transaction failed and none has succeeded since.
    pub failing: bool,
}

/// The queue of writes of one kind, shared by every handler.
pub struct GroupCommit<W: BatchWrite> {
    queue: Arc<Mutex<Queue<W>>>,
    /// How long the first write of a batch waits for others before the batch is
    /// written; zero for writes whose answer someone waits on.
    linger: Duration,
}

impl<W: BatchWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            linger: self.linger,
        }
    }
}

impl<W: BatchWrite> Default for GroupCommit<W> {
    fn default() -> Self {
        Self::lingering(Duration::ZERO)
    }
}

impl<W: BatchWrite> GroupCommit<W> {
    /// A queue whose batches wait `linger` after their first write. Writes that
    /// nobody waits on soon (heartbeats) then share transactions even when they
    /// arrive one at a time: 10,000 agents' 1,000 heartbeats a second are some
    /// ten transactions instead of a thousand.
    pub fn lingering(linger: Duration) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                writing: false,
                in_flight_since: None,
                failing: false,
            })),
            linger,
        }
    }

    /// Stores `write` together with any others that arrive meanwhile, and returns
    /// its answer once it is stored.
    pub async fn write(&self, store: Arc<dyn Store>, write: W) -> Result<W::Output, BatchFailed> {
        let (tx, rx) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push((Instant::now(), write, tx));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(drain(self.queue.clone(), store, self.linger));
        }
        // A dropped sender means the writer task died (a panic): count it as a
        // failed batch rather than waiting for ever.
        rx.await.unwrap_or(Err(BatchFailed::lost()))
    }

    /// How long the oldest unstored write has waited, and whether writes fail.
    pub fn health(&self) -> QueueHealth {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = match (queue.in_flight_since, queue.waiting.first()) {
            (Some(in_flight), _) => Some(in_flight),
            (None, Some((queued, _, _))) => Some(*queued),
            (None, None) => None,
        };
        QueueHealth {
            backlog_age: oldest.map_or(Duration::ZERO, |at| at.elapsed()),
            failing: queue.failing,
        }
    }
}

/// Writes queued writes, a batch per transaction, until the queue is empty.
async fn drain<W: BatchWrite>(
    queue: Arc<Mutex<Queue<W>>>,
    store: Arc<dyn Store>,
    linger: Duration,
) {
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    loop {
        let batch: Vec<(Instant, W, Waiter<W>)> = {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.waiting.is_empty() {
                queue.writing = false;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH);
            queue.in_flight_since = queue.waiting.first().map(|(queued, _, _)| *queued);
            queue.waiting.drain(..take).collect()
        };
        let (writes, waiters): (Vec<W>, Vec<Waiter<W>>) = batch
            .into_iter()
            .map(|(_, write, waiter)| (write, waiter))
            .unzip();
        let count = writes.len();
        let started = Instant::now();
        let written = W::write_batch(&*store, writes).await;
        {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.in_flight_since = None;
            queue.failing = written.is_err();
        }
        tracing::debug!(
            what = W::WHAT,
            writes = count,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "group commit"
        );
        match written {
            Ok(outputs) => {
                for (waiter, output) in waiters.into_iter().zip(outputs) {
                    let _ = waiter.send(Ok(output));
                }
            }
            Err(err) => {
                tracing::error!(error = ?err, writes = count, what = W::WHAT, "a group commit failed");
                let failed = BatchFailed {
                    transient: err.transient_reason(),
                };
                for waiter in waiters {
                    let _ = waiter.send(Err(failed.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::SqliteStore;

    /// A write that answers the size of the batch it was stored in.
    struct Sized;

    impl BatchWrite for Sized {
        type Output = usize;
        const WHAT: &'static str = "test writes";
        fn write_batch(
            _store: &dyn Store,
            batch: Vec<Self>,
        ) -> BoxFuture<'_, StoreResult<Vec<usize>>> {
            Box::pin(async move { Ok(vec![batch.len(); batch.len()]) })
        }
    }

    /// The size of the transaction each of `writes` writes was stored in. They
    /// all queue before the writer task first runs (the test runtime has one
    /// thread, and `join_all` polls every write before it yields).
    async fn batch_sizes(queue: GroupCommit<Sized>, writes: usize) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let answers =
            futures::future::join_all((0..writes).map(|_| queue.write(store.clone(), Sized))).await;
        answers.into_iter().map(|a| a.unwrap()).collect()
    }

    #[tokio::test]
    async fn writes_that_queue_together_share_a_transaction() {
        let sizes = batch_sizes(GroupCommit::default(), 300).await;
        assert_eq!(sizes, vec![300; 300]);
    }

    /// A write whose transaction takes a while, or fails.
    struct Slow(bool);

    impl BatchWrite for Slow {
        type Output = ();
        const WHAT: &'static str = "slow test writes";
        fn write_batch(
            _store: &dyn Store,
            batch: Vec<Self>,
        ) -> BoxFuture<'_, StoreResult<Vec<()>>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if batch.iter().any(|Slow(fails)| *fails) {
                    Err(wharf_store::StoreError::Conflict("refused".into()))
                } else {
                    Ok(vec![(); batch.len()])
                }
            })
        }
    }

    #[tokio::test]
    async fn health_tells_how_long_a_write_waits_and_whether_writes_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let queue = GroupCommit::<Slow>::default();
        assert_eq!(queue.health().backlog_age, Duration::ZERO);
        let write = tokio::spawn({
            let (queue, store) = (queue.clone(), store.clone());
            async move { queue.write(store, Slow(false)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waiting = queue.health();
        assert!(
            waiting.backlog_age >= Duration::from_millis(150),
            "{waiting:?}"
        );
        assert!(!waiting.failing);
        write.await.unwrap().unwrap();
        assert_eq!(queue.health().backlog_age, Duration::ZERO);
        assert_eq!(
            queue.write(store.clone(), Slow(true)).await,
            Err(BatchFailed { transient: None })
        );
        assert!(queue.health().failing);
        queue.write(store, Slow(false)).await.unwrap();
        assert!(!queue.health().failing, "a stored batch ends the failing");
    }

    #[tokio::test]
    async fn a_transaction_holds_at_most_max_batch_writes() {
        let sizes = batch_sizes(GroupCommit::default(), MAX_BATCH + 44).await;
        // One full transaction, then the rest, in the order the writes came.
        let expected: Vec<usize> = [vec![MAX_BATCH; MAX_BATCH], vec![44; 44]].concat();
        assert_eq!(sizes, expected);
    }
}
