-- Group execs: a shell script run on the instances of a group, in batches, with
-- every host's output kept. An exec is a row of `releases` with kind 'exec' and no
-- deployment, so that it shares tasks, steps, agent claims, reports and the
-- one-active-operation-per-group index with releases; `execs` holds what only an
-- exec has. The conventions of 0001_core_resources.sql hold here too.
--
-- `releases.deployment` becomes nullable (NULL only for execs). SQLite cannot
-- change a column's constraint in place, and this migration runs in a
-- transaction with foreign keys on (so they cannot be turned off, and dropping
-- `releases` would cascade into its tasks). So the three release tables are
-- rebuilt together: the old ones are renamed (which points the children's
-- foreign keys at the renamed parents), the new ones are created and filled,
-- the old ones dropped children first (nothing refers to them any more), and
-- the indexes of 0002_releases.sql made again.

ALTER TABLE releases RENAME TO releases_0002;
ALTER TABLE release_tasks RENAME TO release_tasks_0002;
ALTER TABLE release_steps RENAME TO release_steps_0002;

CREATE TABLE releases (
    id                  TEXT    NOT NULL PRIMARY KEY,
    app                 TEXT    NOT NULL,
    group_name          TEXT    NOT NULL,
    -- By name within `app`; NULL for an exec.
    deployment          TEXT,
    -- 'pending', 'running', 'paused' (active) or 'succeeded', 'failed',
    -- 'cancelled' (terminal).
    state               TEXT    NOT NULL,
    -- 'auto', 'first' or 'each'.
    pause               TEXT    NOT NULL,
    batch_count         INTEGER NOT NULL CHECK (batch_count >= 0),
    batch_interval_secs INTEGER NOT NULL CHECK (batch_interval_secs >= 0),
    max_failures        INTEGER NOT NULL CHECK (max_failures >= 0),
    rollback_on_failure INTEGER NOT NULL CHECK (rollback_on_failure IN (0, 1)),
    -- 'release', 'rollback', 'catch-up' or 'exec'.
    kind                TEXT    NOT NULL,
    -- For an automatic rollback: the release that failed.
    rollback_of         TEXT    REFERENCES releases (id),
    continued_through   INTEGER NOT NULL CHECK (continued_through >= 0),
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    message             TEXT,
    CHECK ((kind = 'exec') = (deployment IS NULL)),
    -- A release keeps its group and deployment: neither can be deleted while a
    -- release (active or finished) names it.
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name),
    FOREIGN KEY (app, deployment) REFERENCES deployments (app, name)
) STRICT;

CREATE TABLE release_tasks (
    release_id    TEXT    NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    instance_id   TEXT    NOT NULL,
    instance_name TEXT    NOT NULL,
    -- 0-based.
    batch         INTEGER NOT NULL CHECK (batch >= 0),
    -- 'pending', 'dispatched', 'running', 'succeeded', 'failed' or 'cancelled'.
    state         TEXT    NOT NULL,
    dispatched_at INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    -- When the server gives up on the task; set at dispatch.
    deadline_at   INTEGER,
    image_digest  TEXT,
    message       TEXT,
    PRIMARY KEY (release_id, instance_id)
) STRICT;

CREATE TABLE release_steps (
    release_id    TEXT    NOT NULL,
    instance_id   TEXT    NOT NULL,
    -- 'fetch', 'prepare', 'pull', 'stop', 'start', 'verify' or 'exec'.
    step          TEXT    NOT NULL,
    -- The step's place in the run order (fetch 0 ... verify 5, exec 6).
    ordinal       INTEGER NOT NULL CHECK (ordinal >= 0),
    -- 'running', 'succeeded' or 'failed'.
    state         TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    exit_code     INTEGER,
    -- The retained tail of the output, and how many bytes before it were dropped.
    output        TEXT    NOT NULL DEFAULT '',
    dropped_bytes INTEGER NOT NULL DEFAULT 0 CHECK (dropped_bytes >= 0),
    message       TEXT,
    PRIMARY KEY (release_id, instance_id, step),
    FOREIGN KEY (release_id, instance_id)
        REFERENCES release_tasks (release_id, instance_id) ON DELETE CASCADE
) STRICT;

-- Rows are copied in creation order, so that a rollback's release exists before it.
INSERT INTO releases (id, app, group_name, deployment, state, pause, batch_count,
    batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of,
    continued_through, created_at, started_at, finished_at, message)
SELECT id, app, group_name, deployment, state, pause, batch_count,
    batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of,
    continued_through, created_at, started_at, finished_at, message
FROM releases_0002 ORDER BY created_at, id;

INSERT INTO release_tasks SELECT * FROM release_tasks_0002;
INSERT INTO release_steps SELECT * FROM release_steps_0002;

DROP TABLE release_steps_0002;
DROP TABLE release_tasks_0002;
DROP TABLE releases_0002;

CREATE UNIQUE INDEX releases_one_active_per_group ON releases (app, group_name)
    WHERE state IN ('pending', 'running', 'paused');
CREATE INDEX releases_by_group ON releases (app, group_name, created_at);
CREATE INDEX releases_by_deployment ON releases (app, deployment);
CREATE INDEX releases_by_created_at ON releases (created_at, id);
CREATE INDEX release_tasks_by_instance ON release_tasks (instance_id, state);

-- What only an exec has: the script (run with bash on each instance), its
-- timeout, and the user it runs as (the agent's user when NULL).
CREATE TABLE execs (
    release_id   TEXT    NOT NULL PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
    script       TEXT    NOT NULL,
    timeout_secs INTEGER NOT NULL CHECK (timeout_secs > 0),
    as_user      TEXT
) STRICT;
