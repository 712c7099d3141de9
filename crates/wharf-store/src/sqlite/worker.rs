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

use crate::{StoreError, StoreResult};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

type Call = Box<dyn FnOnce(&mut Connection) + Send>;

enum Job {
    Call(Call),
    /// Ends the thread that takes it (after the calls queued before it).
    Stop,
}

/// A queue of calls and the threads, each with its own connection, that run them.
pub(super) struct Workers {
    queue: crossbeam_channel::Sender<Job>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Workers {
    /// Starts one thread per connection, named `name`.
    pub(super) fn start(name: &str, connections: Vec<Connection>) -> StoreResult<Workers> {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
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
            // A panic in a call must not take the connection's thread with it: the
            // caller gets an error, and the next call runs as usual. The caller may
            // also have gone (its request was dropped); the work is done either
            // way, as a write must be.
            let answered =
                catch_unwind(AssertUnwindSafe(|| call(conn))).unwrap_or(Err(StoreError::Panicked));
            let _ = answer.send(answered);
        }));
        self.queue.send(job).map_err(|_| closed())?;
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn calls_after_close_are_refused() {
        let workers = workers();
        workers.close().await;
        let answer: StoreResult<()> = workers.run(|_| Ok(())).await;
        assert!(matches!(answer, Err(StoreError::Closed)), "{answer:?}");
    }
}
