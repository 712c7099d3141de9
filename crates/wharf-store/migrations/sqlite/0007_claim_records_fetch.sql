-- Claiming a task (dispatched -> running) records its `fetch` step as succeeded at
-- the claim's time, in the same statement: the claim is then one statement, which
-- at thousands of agents claiming at once is what the single writer can afford,
-- and it needs no savepoint to stay all or nothing. `fetch` is ordinal 0. INSERT OR
-- REPLACE rather than an upsert: a fetch step has no output to keep. The
-- conventions of 0001_core_resources.sql hold here too.

CREATE TRIGGER release_tasks_claim_records_fetch
AFTER UPDATE OF state ON release_tasks
WHEN OLD.state = 'dispatched' AND NEW.state = 'running'
BEGIN
    INSERT OR REPLACE INTO release_steps
        (release_id, instance_id, step, ordinal, state, started_at, finished_at)
    VALUES (NEW.release_id, NEW.instance_id, 'fetch', 0, 'succeeded',
            NEW.started_at, NEW.started_at);
END;
