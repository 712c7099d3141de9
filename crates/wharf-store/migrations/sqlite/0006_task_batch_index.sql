-- The release driver and the agents' step reports ask, many times per batch, how
-- the tasks of one batch of a release stand (how many are open, when the last one
-- ended). Without this index each such question scans every task of the release,
-- which at 10,000 instances made a release quadratic. With `state` and
-- `finished_at` in it, the per-batch summary is answered from the index alone.
-- The conventions of 0001_core_resources.sql hold here too.

CREATE INDEX release_tasks_by_batch ON release_tasks (release_id, batch, state, finished_at);
