-- How many tasks of each batch of a release are in each state, and when the last
-- one ended, kept up to date by triggers on `release_tasks`.
--
-- The release driver asks this on every pass, every read of a release asks it for
-- the release's version, and every task end asks how many tasks of its batch are
-- still open. Counted from `release_tasks_by_batch` (0006), each question read
-- every task of the release or batch: at 10,000 instances 5-25 ms per driver
-- pass on a busy two-core machine, spent between a batch's decision and its
-- dispatch. Kept here, each is one row per batch.
--
-- A task's release and batch never change, and its `finished_at` is set once,
-- when it ends; so the counts move by one per state change and
-- `last_finished_at` only grows. The conventions of 0001_core_resources.sql hold
-- here too.

CREATE TABLE release_batch_counts (
    release_id       TEXT    NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    -- 0-based, as in release_tasks.
    batch            INTEGER NOT NULL CHECK (batch >= 0),
    pending          INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0),
    dispatched       INTEGER NOT NULL DEFAULT 0 CHECK (dispatched >= 0),
    running          INTEGER NOT NULL DEFAULT 0 CHECK (running >= 0),
    succeeded        INTEGER NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed           INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    cancelled        INTEGER NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
    -- The latest finished_at of the batch's tasks; NULL until one ends.
    last_finished_at INTEGER,
    PRIMARY KEY (release_id, batch)
) STRICT, WITHOUT ROWID;

-- The releases made before this migration.
INSERT INTO release_batch_counts
    (release_id, batch, pending, dispatched, running, succeeded, failed, cancelled,
     last_finished_at)
SELECT release_id, batch,
       SUM(state = 'pending'), SUM(state = 'dispatched'), SUM(state = 'running'),
       SUM(state = 'succeeded'), SUM(state = 'failed'), SUM(state = 'cancelled'),
       MAX(finished_at)
FROM release_tasks GROUP BY release_id, batch;

CREATE TRIGGER release_batch_counts_on_insert
AFTER INSERT ON release_tasks
BEGIN
    INSERT OR IGNORE INTO release_batch_counts (release_id, batch)
    VALUES (NEW.release_id, NEW.batch);
    UPDATE release_batch_counts SET
        pending = pending + (NEW.state = 'pending'),
        dispatched = dispatched + (NEW.state = 'dispatched'),
        running = running + (NEW.state = 'running'),
        succeeded = succeeded + (NEW.state = 'succeeded'),
        failed = failed + (NEW.state = 'failed'),
        cancelled = cancelled + (NEW.state = 'cancelled'),
        last_finished_at = MAX(COALESCE(last_finished_at, NEW.finished_at),
                               COALESCE(NEW.finished_at, last_finished_at))
    WHERE release_id = NEW.release_id AND batch = NEW.batch;
END;

-- Except for a batch's dispatch (pending -> dispatched), which moves a whole batch
-- of up to thousands of tasks in one statement: the store moves its counts in one
-- statement after it (tasks.rs, `dispatch_batch`), rather than one per task here.
CREATE TRIGGER release_batch_counts_on_update
AFTER UPDATE OF state, finished_at ON release_tasks
WHEN (OLD.state IS NOT NEW.state OR OLD.finished_at IS NOT NEW.finished_at)
    AND NOT (OLD.state = 'pending' AND NEW.state = 'dispatched')
BEGIN
    UPDATE release_batch_counts SET
        pending = pending - (OLD.state = 'pending') + (NEW.state = 'pending'),
        dispatched = dispatched - (OLD.state = 'dispatched') + (NEW.state = 'dispatched'),
        running = running - (OLD.state = 'running') + (NEW.state = 'running'),
        succeeded = succeeded - (OLD.state = 'succeeded') + (NEW.state = 'succeeded'),
        failed = failed - (OLD.state = 'failed') + (NEW.state = 'failed'),
        cancelled = cancelled - (OLD.state = 'cancelled') + (NEW.state = 'cancelled'),
        last_finished_at = MAX(COALESCE(last_finished_at, NEW.finished_at),
                               COALESCE(NEW.finished_at, last_finished_at))
    WHERE release_id = NEW.release_id AND batch = NEW.batch;
END;

-- Tasks go only with their release, whose counts go with it too (ON DELETE
-- CASCADE); this keeps the counts right should a task ever go alone.
CREATE TRIGGER release_batch_counts_on_delete
AFTER DELETE ON release_tasks
BEGIN
    UPDATE release_batch_counts SET
        pending = pending - (OLD.state = 'pending'),
        dispatched = dispatched - (OLD.state = 'dispatched'),
        running = running - (OLD.state = 'running'),
        succeeded = succeeded - (OLD.state = 'succeeded'),
        failed = failed - (OLD.state = 'failed'),
        cancelled = cancelled - (OLD.state = 'cancelled')
    WHERE release_id = OLD.release_id AND batch = OLD.batch;
END;
