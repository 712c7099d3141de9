//! Threads that own SQLite connections and run whole store calls on them.
//!
//! SQLite is a library that blocks: a statement runs on the caller's thread. An
//! async server must not block its runtime's threads, so each connection lives on
//! a thread of its own, and a store call sends that thread one closure that does
//! all of the call's statements, then waits for the answer. One call is one round
//! trip between threads, however many statements and rows it has; with thousands
//! of agents reporting at once, that round trip, not SQLite, is what costs (see
//! BENCHMARKS.md).
//!
//! Several threads may share one queue (the readers): whichever is free takes the
//! next call, so one long read does not hold up the short ones behind it.
//!
//! A queue holds [`MAX_QUEUED`] calls at most: a call that finds it full fails at
//! once as unavailable (the API answers 503 with `Retry-After`) instead of waiting
//! behind a backlog that grows without bound. A call whose caller has gone (an
//! HTTP request whose client disconnected) is dropped when its turn comes,
//! before it touches the database.

use crate::{StoreError, StoreResult};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The most calls one queue holds. Agents' writes come in group commits and
/// their reads mostly from the server's caches, so even 10,000 agents keep a
/// queue far shorter; a queue this long means the store cannot keep up, and
/// more waiting would only make every answer late.
pub(super) const MAX_QUEUED: usize = 4096;

type Call = Box<dyn FnOnce(&mut Connection) + Send>;

enum Job {
    Call(Call),
    /// Ends the thread that takes it (after the calls queued before it).
    Stop,
}

/// A queue of calls and the threads, each with its own connection, that run them.
pub(super) struct Workers {
    queue: crossbeam_channel::Sender<Job>,
    max_queued: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Workers {
    /// Starts one thread per connection, named `name`.
    pub(super) fn start(name: &str, connections: Vec<Connection>) -> StoreResult<Workers> {
        Self::start_bounded(name, connections, MAX_QUEUED)
    }

    /// [`Workers::start`] with a queue of `max_queued` calls.
    pub(super) fn start_bounded(
        name: &str,
        connections: Vec<Connection>,
        max_queued: usize,
    ) -> StoreResult<Workers> {
        // One more slot per thread for its `Stop`, so that closing never waits.
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(max_queued + connections.len());
        let mut threads = Vec::with_capacity(connections.len());
        for mut conn in connections {
            let jobs = jobs.clone();
            let thread = std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    while let Ok(Job::Call(call)) = jobs.recv() {
                        call(&mut conn);
                        // Every call ends its transaction (rusqlite rolls one back
                        // when it is dropped, even by a panic); should one ever be
                        // left open, it is rolled back here rather than making every
                        // later `BEGIN` on this connection fail.
                        if !conn.is_autocommit() {
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                    }
                })
                .map_err(|err| {
                    StoreError::Corrupt(format!("cannot start a database thread: {err}"))
                })?;
            threads.push(thread);
        }
        Ok(Workers {
            max_queued,
            queue,
            threads: Mutex::new(threads),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `call` on one of the connections and returns its answer.
    pub(super) async fn run<T, F>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let (answer, answered) = oneshot::channel();
        let job = Job::Call(Box::new(move |conn: &mut Connection| {
            // The caller has gone (its request was dropped while the call waited):
            // nobody wants the answer, and a call not begun changes nothing.
            if answer.is_closed() {
                return;
            }
            // A panic in a call must not take the connection's thread with it: the
            // caller gets an error, and the next call runs as usual. A call begun
            // is done whole even if its caller goes meanwhile, as a write must be.
            let answered =
                catch_unwind(AssertUnwindSafe(|| call(conn))).unwrap_or(Err(StoreError::Panicked));
            let _ = answer.send(answered);
        }));
        // The channel has room for the `Stop`s that closing sends beyond
        // `max_queued` calls; a call that finds it that full (or fuller, in a race
        // with another call) is refused.
        if self.queue.len() >= self.max_queued {
            return Err(overloaded());
        }
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => return Err(overloaded()),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(closed()),
        }
        answered.await.map_err(|_| closed())?
    }

    /// Stops taking calls, lets the threads finish the calls already queued, and
    /// waits for them to end (which closes their connections).
    pub(super) async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for _ in &threads {
            let _ = self.queue.send(Job::Stop);
        }
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Workers {
    /// Lets the threads end once the store is gone; queued calls still run.
    fn drop(&mut self) {
        let threads = self.threads.get_mut().map(|t| t.len()).unwrap_or(0);
        for _ in 0..threads {
            let _ = self.queue.send(Job::Stop);
        }
    }
}

fn closed() -> StoreError {
    StoreError::Closed
}

fn overloaded() -> StoreError {
    StoreError::Unavailable("too many store calls are waiting; try again shortly".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn workers() -> Workers {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        Workers::start("test-db", vec![conn]).expect("a database thread")
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_the_next_call_runs() {
        let workers = workers();
        let answer: StoreResult<()> = workers.run(|_| panic!("a bug")).await;
        assert!(matches!(answer, Err(StoreError::Panicked)), "{answer:?}");
        let one: i64 = workers
            .run(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get(0))?))
            .await
            .expect("the next call");
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_before_the_next_call() {
        let workers = workers();
        workers
            .run(|conn| {
                Ok(conn.execute_batch(
                    "CREATE TABLE t (x INTEGER); BEGIN; INSERT INTO t VALUES (1);",
                )?)
            })
            .await
            .expect("a call that leaves its transaction open");
        let rows: i64 = workers
            .run(|conn| {
                // Would fail with "cannot start a transaction within a transaction".
                conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
                Ok(conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))?)
            })
            .await
            .expect("the next call");
        assert_eq!(rows, 0, "the open transaction's insert was rolled back");
    }

    /// A call that holds the (one) thread until the sender is used.
    fn hold_the_thread(
        workers: &Arc<Workers>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<StoreResult<()>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let workers = workers.clone();
        let blocker = tokio::spawn(async move {
            workers
                .run(move |_| {
                    let _ = held.recv();
                    Ok(())
                })
                .await
        });
        (release, blocker)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_calls_at_once_and_takes_them_again_once_drained() {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        let workers = Arc::new(Workers::start_bounded("test-db", vec![conn], 2).unwrap());
        // One call holds the thread; two more fill the queue.
        let (release, blocker) = hold_the_thread(&workers);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let workers = workers.clone();
                tokio::spawn(async move { workers.run(|_| Ok(7)).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let refused: StoreResult<()> = workers.run(|_| Ok(())).await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("too many")),
            "{refused:?}"
        );
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for call in queued {
            assert_eq!(call.await.unwrap().unwrap(), 7);
        }
        let taken: i64 = workers.run(|_| Ok(1)).await.expect("room again");
        assert_eq!(taken, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_whose_caller_went_away_is_not_run() {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        let workers = Arc::new(Workers::start("test-db", vec![conn]).unwrap());
        workers
            .run(|conn| Ok(conn.execute_batch("CREATE TABLE t (x INTEGER)")?))
            .await
            .unwrap();
        let (release, blocker) = hold_the_thread(&workers);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Queued behind the blocker, then given up on (as a dropped request is).
        let abandoned = tokio::spawn({
            let workers = workers.clone();
            async move {
                workers
                    .run(|conn| Ok(conn.execute_batch("INSERT INTO t VALUES (1)")?))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let rows: i64 = workers
            .run(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 0, "the abandoned insert never ran");
    }

    #[tokio::test]
    async fn calls_after_close_are_refused() {
        let workers = workers();
        workers.close().await;
        let answer: StoreResult<()> = workers.run(|_| Ok(())).await;
        assert!(matches!(answer, Err(StoreError::Closed)), "{answer:?}");
    }
}
