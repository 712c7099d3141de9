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
                        // A panic in a call must not take the connection's thread
                        // with it: the caller sees its answer dropped (an error),
                        // and the next call runs as usual. A transaction the
                        // panicking call left open is rolled back by its drop.
                        let _ = catch_unwind(AssertUnwindSafe(|| call(&mut conn)));
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
            // The caller may have gone (its request was dropped); the work is done
            // either way, as a write must be.
            let _ = answer.send(call(conn));
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
