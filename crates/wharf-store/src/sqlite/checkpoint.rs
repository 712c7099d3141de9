//! Copies the WAL's pages back into the database file, on a thread of its own.
//!
//! By default SQLite does this inside whichever commit finds the WAL past 1,000
//! pages: that commit copies the pages and syncs the file before it returns, and
//! every write queued behind it on the one writer waits. On a busy two-core
//! machine this added 25–40 ms to a commit now and then, among them the commit
//! that dispatches a batch of 1,000 instances (BENCHMARKS.md, machine E). So the
//! writer's automatic checkpoints are off, and this thread runs a PASSIVE
//! checkpoint every `INTERVAL`. A passive checkpoint takes no lock that the writer
//! or the readers wait for, and, like the automatic one, copies every page no
//! open read still needs; the WAL is reused from its start once all of it was
//! copied. A checkpoint that fails is tried again at the next interval.

use crate::{StoreError, StoreResult};
use rusqlite::Connection;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the WAL is copied back. A 10,000-instance release writes a few MB of
/// WAL per second at most, so it stays within a few MB, as with SQLite's default.
const INTERVAL: Duration = Duration::from_millis(500);

/// Whether the thread was told to stop, and how it is woken for that.
type StopSignal = Arc<(Mutex<bool>, Condvar)>;

pub(super) struct Checkpointer {
    stop: StopSignal,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread, which checkpoints through `conn` until stopped.
    pub(super) fn start(conn: Connection) -> StoreResult<Checkpointer> {
        let stop: StopSignal = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-db-checkpoint".to_owned())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                loop {
                    let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                    let (guard, _) = wake
                        .wait_timeout_while(guard, INTERVAL, |stopped| !*stopped)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                    drop(guard);
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|err| {
                StoreError::Corrupt(format!("cannot start the checkpoint thread: {err}"))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Tells the thread to stop and waits for it (which closes its connection).
    pub(super) async fn close(&self) {
        self.signal_stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    fn signal_stop(&self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

impl Drop for Checkpointer {
    /// Lets the thread end once the store is gone.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::SqliteStore;
    use crate::Store;

    /// How many WAL frames there are and how many were copied back, from the
    /// WAL index (`-shm`): `mxFrame` is the u32 at byte 16 of its header and
    /// `nBackfill` the u32 at byte 96 (SQLite's "WAL-index Format"), both in
    /// the machine's byte order.
    fn wal_frames(db: &std::path::Path) -> (u32, u32) {
        let shm = std::fs::read(db.with_extension("db-shm")).expect("the WAL index");
        let at = |offset: usize| {
            u32::from_ne_bytes(shm[offset..offset + 4].try_into().expect("four bytes"))
        };
        (at(16), at(96))
    }

    #[tokio::test]
    async fn the_wal_is_copied_back_by_the_thread_not_by_the_writes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("wharf.db");
        let store = SqliteStore::open(&db).await.expect("the store opens");
        // Let a checkpoint after the migrations pass, then write.
        tokio::time::sleep(super::INTERVAL * 2).await;
        for i in 0..50 {
            store
                .app_create(&crate::AppRecord {
                    name: format!("app-{i}"),
                    description: "x".repeat(2000),
                    created_at: chrono::DateTime::from_timestamp_millis(1_800_000_000_000)
                        .expect("a time"),
                })
                .await
                .expect("a write");
        }
        // The writes alone are far below SQLite's automatic checkpoint (1,000
        // pages); within a few intervals the thread has copied every frame.
        let deadline = std::time::Instant::now() + super::INTERVAL * 6;
        loop {
            let (frames, copied) = wal_frames(&db);
            if frames > 0 && copied == frames {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not copied back: {copied} of {frames} frames"
            );
            tokio::time::sleep(super::INTERVAL / 5).await;
        }
        store.close().await;
    }
}
