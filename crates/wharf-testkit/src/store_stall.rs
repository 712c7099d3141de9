//! A stalled store, for fault tests: another process holds the SQLite database's
//! write lock, as a long backup, a hung disk or an operator's open `sqlite3` shell
//! would. The server's writes wait (its busy timeout) and then fail; its reads go
//! on, since the database is in WAL mode.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Holds the write lock of the SQLite database at `db` for `how_long`, then lets
/// go without writing anything. Returns once the lock is taken; the returned
/// handle finishes when it is released.
pub async fn hold_write_lock(
    db: &Path,
    how_long: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let db: PathBuf = db.to_path_buf();
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let conn = rusqlite::Connection::open(&db)?;
        // The server's writer may be inside a transaction when we ask.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let _ = taken_tx.send(());
        std::thread::sleep(how_long);
        conn.execute_batch("ROLLBACK")?;
        Ok(())
    });
    match taken_rx.await {
        Ok(()) => Ok(holder),
        // The holder ended before taking the lock: its error says why.
        Err(_) => Err(holder
            .await?
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the lock holder ended early"))),
    }
}
