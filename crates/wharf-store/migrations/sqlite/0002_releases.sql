-- Releases: one deployment published to the instances of one group, the work of
-- each release on each instance (a task), and the steps each instance ran.
-- The conventions of 0001_core_resources.sql hold here too. States are stored by
-- their names with no CHECK, like a deployment's kind: the store refuses to read
-- a value it does not know.

CREATE TABLE releases (
    id                  TEXT    NOT NULL PRIMARY KEY,
    app                 TEXT    NOT NULL,
    group_name          TEXT    NOT NULL,
    -- By name within `app`.
    deployment          TEXT    NOT NULL,
    -- 'pending', 'running', 'paused' (active) or 'succeeded', 'failed',
    -- 'cancelled' (terminal).
    state               TEXT    NOT NULL,
    -- 'auto', 'first' or 'each'.
    pause               TEXT    NOT NULL,
    batch_count         INTEGER NOT NULL CHECK (batch_count >= 0),
    batch_interval_secs INTEGER NOT NULL CHECK (batch_interval_secs >= 0),
    max_failures        INTEGER NOT NULL CHECK (max_failures >= 0),
    rollback_on_failure INTEGER NOT NULL CHECK (rollback_on_failure IN (0, 1)),
    -- 'release', 'rollback' or 'catch-up'.
    kind                TEXT    NOT NULL,
    -- For an automatic rollback: the release that failed.
    rollback_of         TEXT    REFERENCES releases (id),
    continued_through   INTEGER NOT NULL CHECK (continued_through >= 0),
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    message             TEXT,
    -- A release keeps its group and deployment: neither can be deleted while a
    -- release (active or finished) names it.
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name),
    FOREIGN KEY (app, deployment) REFERENCES deployments (app, name)
) STRICT;

-- One active release per group. The store checks this first so that it can name
-- the active release; the index is the backstop, also against another process
-- writing the same file.
CREATE UNIQUE INDEX releases_one_active_per_group ON releases (app, group_name)
    WHERE state IN ('pending', 'running', 'paused');

CREATE INDEX releases_by_group ON releases (app, group_name, created_at);
CREATE INDEX releases_by_deployment ON releases (app, deployment);
CREATE INDEX releases_by_created_at ON releases (created_at, id);

-- The work of a release on one instance. The instance is not a foreign key: an
-- instance may be deleted while a release still shows it, under the name it had.
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

CREATE INDEX release_tasks_by_instance ON release_tasks (instance_id, state);

-- The steps one instance ran for one release: at most one row per step, since a
-- step never runs twice.
CREATE TABLE release_steps (
    release_id    TEXT    NOT NULL,
    instance_id   TEXT    NOT NULL,
    -- 'fetch', 'prepare', 'pull', 'stop', 'start' or 'verify'.
    step          TEXT    NOT NULL,
    -- The step's place in the run order (fetch 0 ... verify 5), for listing.
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
