-- The whole schema of Wharf's store on PostgreSQL, as the SQLite migrations
-- 0001-0008 left it; later changes come as new files.
--
-- Conventions (the SQLite schema's, so that both backends read and write the
-- same values):
--   * times are BIGINT unix milliseconds (UTC), columns named *_at;
--   * counts and numbers are BIGINT; booleans are BOOLEAN;
--   * labels are JSON text (an object of string to string);
--   * states and kinds are stored by their names, with no CHECK: the store
--     refuses to read a value it does not know;
--   * application-scoped rows are keyed by (app, name);
--   * text columns compare bytewise (COLLATE "C"), as SQLite's do, so that lists
--     come in the same order on both backends whatever the database's locale.
-- The store checks parents and dependants explicitly inside its transactions so
-- that it can name them in errors; the foreign keys and unique indexes are the
-- backstop, also against other server processes writing the same database.

CREATE TABLE api_tokens (
    id         TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    -- Hex SHA-256 of the secret; the secret itself is never stored.
    hash       TEXT COLLATE "C"   NOT NULL UNIQUE,
    role       TEXT COLLATE "C"   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE registration_tokens (
    id         TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    hash       TEXT COLLATE "C"   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    uses       BIGINT NOT NULL CHECK (uses >= 0),
    -- Decremented by each registration with `UPDATE ... WHERE uses_left > 0`,
    -- which locks the row: concurrent registrations never overspend it.
    uses_left  BIGINT NOT NULL CHECK (uses_left >= 0)
);

CREATE INDEX registration_tokens_by_created_at ON registration_tokens (created_at, id);

CREATE TABLE instances (
    id                TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    name              TEXT COLLATE "C"   NOT NULL UNIQUE,
    hostname          TEXT COLLATE "C"   NOT NULL,
    address           TEXT COLLATE "C"   NOT NULL,
    os                TEXT COLLATE "C"   NOT NULL,
    arch              TEXT COLLATE "C"   NOT NULL,
    agent_version     TEXT COLLATE "C"   NOT NULL,
    labels            TEXT COLLATE "C"   NOT NULL DEFAULT '{}',
    -- Hex SHA-256 of the agent's credential.
    credential_hash   TEXT COLLATE "C"   NOT NULL UNIQUE,
    -- The scaling group the agent registered for, by name (not a foreign key:
    -- the instance outlives a deleted scaling group).
    scaling_group     TEXT COLLATE "C",
    registered_at     BIGINT NOT NULL,
    last_heartbeat_at BIGINT,
    -- What the agent last reported about the host's Docker Engine.
    docker_version    TEXT COLLATE "C",
    docker_error      TEXT COLLATE "C"
);

CREATE TABLE apps (
    name        TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    description TEXT COLLATE "C"   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE registries (
    name             TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    endpoint         TEXT COLLATE "C"    NOT NULL,
    private_endpoint TEXT COLLATE "C",
    username         TEXT COLLATE "C",
    -- Nonce and ciphertext of the password, sealed by the server.
    password_sealed  BYTEA,
    insecure         BOOLEAN NOT NULL,
    created_at       BIGINT  NOT NULL
);

-- One row per revision of an application. Immutable once created.
CREATE TABLE deployments (
    app                   TEXT COLLATE "C"    NOT NULL REFERENCES apps (name),
    name                  TEXT COLLATE "C"    NOT NULL,
    kind                  TEXT COLLATE "C"    NOT NULL,
    image_registry        TEXT COLLATE "C"    REFERENCES registries (name),
    image_namespace       TEXT COLLATE "C",
    image_repository      TEXT COLLATE "C",
    image_tag             TEXT COLLATE "C",
    image_private_network BOOLEAN,
    workdir               TEXT COLLATE "C"    NOT NULL,
    start_script          TEXT COLLATE "C"    NOT NULL,
    stop_script           TEXT COLLATE "C"    NOT NULL,
    verify_url            TEXT COLLATE "C",
    verify_expect_status  BIGINT,
    verify_expect_body    TEXT COLLATE "C",
    pull_timeout_secs     BIGINT  NOT NULL,
    script_timeout_secs   BIGINT  NOT NULL,
    verify_timeout_secs   BIGINT  NOT NULL,
    created_at            BIGINT  NOT NULL,
    PRIMARY KEY (app, name),
    CHECK ((image_registry IS NULL) = (image_namespace IS NULL)
       AND (image_registry IS NULL) = (image_repository IS NULL)
       AND (image_registry IS NULL) = (image_tag IS NULL)
       AND (image_registry IS NULL) = (image_private_network IS NULL)),
    CHECK ((verify_url IS NULL) = (verify_expect_status IS NULL)),
    CHECK (verify_expect_body IS NULL OR verify_url IS NOT NULL)
);

CREATE INDEX deployments_by_registry ON deployments (image_registry);

CREATE TABLE app_groups (
    app                 TEXT COLLATE "C"   NOT NULL REFERENCES apps (name),
    name                TEXT COLLATE "C"   NOT NULL,
    created_at          BIGINT NOT NULL,
    current_deployment  TEXT COLLATE "C",
    previous_deployment TEXT COLLATE "C",
    PRIMARY KEY (app, name),
    FOREIGN KEY (app, current_deployment) REFERENCES deployments (app, name),
    FOREIGN KEY (app, previous_deployment) REFERENCES deployments (app, name)
);

CREATE TABLE group_members (
    app          TEXT COLLATE "C"   NOT NULL,
    group_name   TEXT COLLATE "C"   NOT NULL,
    instance_id  TEXT COLLATE "C"   NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    deployment   TEXT COLLATE "C",
    image_digest TEXT COLLATE "C",
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (app, group_name, instance_id),
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name)
);

CREATE INDEX group_members_by_instance ON group_members (instance_id);

CREATE TABLE releases (
    id                  TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    app                 TEXT COLLATE "C"    NOT NULL,
    group_name          TEXT COLLATE "C"    NOT NULL,
    -- By name within `app`; NULL for an exec.
    deployment          TEXT COLLATE "C",
    state               TEXT COLLATE "C"    NOT NULL,
    pause               TEXT COLLATE "C"    NOT NULL,
    batch_count         BIGINT  NOT NULL CHECK (batch_count >= 0),
    batch_interval_secs BIGINT  NOT NULL CHECK (batch_interval_secs >= 0),
    max_failures        BIGINT  NOT NULL CHECK (max_failures >= 0),
    rollback_on_failure BOOLEAN NOT NULL,
    kind                TEXT COLLATE "C"    NOT NULL,
    rollback_of         TEXT COLLATE "C"    REFERENCES releases (id),
    continued_through   BIGINT  NOT NULL CHECK (continued_through >= 0),
    created_at          BIGINT  NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    message             TEXT COLLATE "C",
    CHECK ((kind = 'exec') = (deployment IS NULL)),
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name),
    FOREIGN KEY (app, deployment) REFERENCES deployments (app, name)
);

-- One active release (or exec) per group: the store checks first so that it can
-- name the active release; the index is the backstop against concurrent
-- creates, from this process or another.
CREATE UNIQUE INDEX releases_one_active_per_group ON releases (app, group_name)
    WHERE state IN ('pending', 'running', 'paused');
CREATE INDEX releases_by_group ON releases (app, group_name, created_at);
CREATE INDEX releases_by_deployment ON releases (app, deployment);
CREATE INDEX releases_by_created_at ON releases (created_at, id);
CREATE INDEX releases_rollback_of ON releases (rollback_of);

-- The instance is not a foreign key: an instance may be deleted while a release
-- still shows it, under the name it had.
CREATE TABLE release_tasks (
    release_id    TEXT COLLATE "C"   NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    instance_id   TEXT COLLATE "C"   NOT NULL,
    instance_name TEXT COLLATE "C"   NOT NULL,
    batch         BIGINT NOT NULL CHECK (batch >= 0),
    state         TEXT COLLATE "C"   NOT NULL,
    dispatched_at BIGINT,
    started_at    BIGINT,
    finished_at   BIGINT,
    deadline_at   BIGINT,
    image_digest  TEXT COLLATE "C",
    message       TEXT COLLATE "C",
    PRIMARY KEY (release_id, instance_id)
);

CREATE INDEX release_tasks_by_instance ON release_tasks (instance_id, state);
CREATE INDEX release_tasks_by_batch ON release_tasks (release_id, batch, state);

CREATE TABLE release_steps (
    release_id    TEXT COLLATE "C"   NOT NULL,
    instance_id   TEXT COLLATE "C"   NOT NULL,
    step          TEXT COLLATE "C"   NOT NULL,
    -- The step's place in the run order (fetch 0 ... verify 5, exec 6).
    ordinal       BIGINT NOT NULL CHECK (ordinal >= 0),
    state         TEXT COLLATE "C"   NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    exit_code     BIGINT,
    output        TEXT COLLATE "C"   NOT NULL DEFAULT '',
    dropped_bytes BIGINT NOT NULL DEFAULT 0 CHECK (dropped_bytes >= 0),
    message       TEXT COLLATE "C",
    PRIMARY KEY (release_id, instance_id, step),
    FOREIGN KEY (release_id, instance_id)
        REFERENCES release_tasks (release_id, instance_id) ON DELETE CASCADE
);

CREATE TABLE execs (
    release_id   TEXT COLLATE "C"   NOT NULL PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
    script       TEXT COLLATE "C"   NOT NULL,
    timeout_secs BIGINT NOT NULL CHECK (timeout_secs > 0),
    as_user      TEXT COLLATE "C"
);

CREATE TABLE scaling_groups (
    name                 TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    app                  TEXT COLLATE "C"    NOT NULL,
    group_name           TEXT COLLATE "C"    NOT NULL,
    on_suspend           TEXT COLLATE "C",
    on_resume            TEXT COLLATE "C",
    created_at           BIGINT  NOT NULL,
    state                TEXT COLLATE "C"    NOT NULL,
    held_by              TEXT COLLATE "C",
    suspended_at         BIGINT,
    last_release         TEXT COLLATE "C",
    suspend_hook_pending BOOLEAN NOT NULL DEFAULT FALSE,
    resume_hook_pending  BOOLEAN NOT NULL DEFAULT FALSE,
    resume_attempts      BIGINT  NOT NULL DEFAULT 0 CHECK (resume_attempts >= 0),
    next_hook_at         BIGINT,
    last_error           TEXT COLLATE "C",
    CHECK ((state = 'suspended') = (held_by IS NOT NULL)),
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name)
);

CREATE INDEX scaling_groups_by_group ON scaling_groups (app, group_name);

CREATE TABLE scaling_held (
    scaling_group TEXT COLLATE "C"    NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    instance_id   TEXT COLLATE "C"    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    held_at       BIGINT  NOT NULL,
    joined        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (scaling_group, instance_id)
);

CREATE INDEX scaling_held_by_instance ON scaling_held (instance_id);

CREATE TABLE scaling_activities (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scaling_group TEXT COLLATE "C"   NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    instance_id   TEXT COLLATE "C"   NOT NULL,
    instance_name TEXT COLLATE "C"   NOT NULL,
    kind          TEXT COLLATE "C"   NOT NULL,
    at            BIGINT NOT NULL
);

CREATE INDEX scaling_activities_by_group ON scaling_activities (scaling_group, seq);

CREATE TABLE scaling_hook_runs (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scaling_group TEXT COLLATE "C"   NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    hook          TEXT COLLATE "C"   NOT NULL,
    release_id    TEXT COLLATE "C",
    attempt       BIGINT NOT NULL CHECK (attempt >= 1),
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT NOT NULL,
    exit_code     BIGINT,
    output        TEXT COLLATE "C"   NOT NULL,
    error         TEXT COLLATE "C"
);

CREATE INDEX scaling_hook_runs_by_group ON scaling_hook_runs (scaling_group, seq);

-- How many tasks of each batch of a release are in each state, and when the
-- last one ended (see the SQLite migration 0008 for why they are kept). Kept by
-- statement-level triggers on `release_tasks`: each statement moves each
-- batch's counts once, whatever number of tasks it changed (a batch's dispatch,
-- a cancel), and a statement that changes no task's state or end time (a
-- digest) touches no count row, so it takes no lock on it.
CREATE TABLE release_batch_counts (
    release_id       TEXT COLLATE "C"   NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    batch            BIGINT NOT NULL CHECK (batch >= 0),
    pending          BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0),
    dispatched       BIGINT NOT NULL DEFAULT 0 CHECK (dispatched >= 0),
    running          BIGINT NOT NULL DEFAULT 0 CHECK (running >= 0),
    succeeded        BIGINT NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed           BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
    cancelled        BIGINT NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
    last_finished_at BIGINT,
    PRIMARY KEY (release_id, batch)
);

CREATE FUNCTION release_batch_counts_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO release_batch_counts AS c
        (release_id, batch, pending, dispatched, running, succeeded, failed, cancelled,
         last_finished_at)
    SELECT release_id, batch,
           COUNT(*) FILTER (WHERE state = 'pending'),
           COUNT(*) FILTER (WHERE state = 'dispatched'),
           COUNT(*) FILTER (WHERE state = 'running'),
           COUNT(*) FILTER (WHERE state = 'succeeded'),
           COUNT(*) FILTER (WHERE state = 'failed'),
           COUNT(*) FILTER (WHERE state = 'cancelled'),
           MAX(finished_at)
    FROM new_tasks GROUP BY release_id, batch
    ON CONFLICT (release_id, batch) DO UPDATE SET
        pending = c.pending + excluded.pending,
        dispatched = c.dispatched + excluded.dispatched,
        running = c.running + excluded.running,
        succeeded = c.succeeded + excluded.succeeded,
        failed = c.failed + excluded.failed,
        cancelled = c.cancelled + excluded.cancelled,
        last_finished_at = GREATEST(c.last_finished_at, excluded.last_finished_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER release_batch_counts_on_insert
AFTER INSERT ON release_tasks
REFERENCING NEW TABLE AS new_tasks
FOR EACH STATEMENT EXECUTE FUNCTION release_batch_counts_on_insert();

-- A task's release, instance and batch never change, so old and new rows pair
-- up by (release_id, instance_id).
CREATE FUNCTION release_batch_counts_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE release_batch_counts AS c SET
        pending = c.pending + d.pending,
        dispatched = c.dispatched + d.dispatched,
        running = c.running + d.running,
        succeeded = c.succeeded + d.succeeded,
        failed = c.failed + d.failed,
        cancelled = c.cancelled + d.cancelled,
        last_finished_at = GREATEST(c.last_finished_at, d.last_finished_at)
    FROM (
        SELECT n.release_id, n.batch,
               SUM((n.state = 'pending')::int - (o.state = 'pending')::int) AS pending,
               SUM((n.state = 'dispatched')::int - (o.state = 'dispatched')::int) AS dispatched,
               SUM((n.state = 'running')::int - (o.state = 'running')::int) AS running,
               SUM((n.state = 'succeeded')::int - (o.state = 'succeeded')::int) AS succeeded,
               SUM((n.state = 'failed')::int - (o.state = 'failed')::int) AS failed,
               SUM((n.state = 'cancelled')::int - (o.state = 'cancelled')::int) AS cancelled,
               MAX(n.finished_at) AS last_finished_at
        FROM new_tasks n JOIN old_tasks o
          ON o.release_id = n.release_id AND o.instance_id = n.instance_id
        WHERE n.state IS DISTINCT FROM o.state
           OR n.finished_at IS DISTINCT FROM o.finished_at
        GROUP BY n.release_id, n.batch
    ) AS d
    WHERE c.release_id = d.release_id AND c.batch = d.batch;
    RETURN NULL;
END
$$;

CREATE TRIGGER release_batch_counts_on_update
AFTER UPDATE ON release_tasks
REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
FOR EACH STATEMENT EXECUTE FUNCTION release_batch_counts_on_update();

-- Tasks go only with their release, whose counts go with it (ON DELETE
-- CASCADE); this keeps the counts right should a task ever go alone.
CREATE FUNCTION release_batch_counts_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE release_batch_counts AS c SET
        pending = c.pending - d.pending,
        dispatched = c.dispatched - d.dispatched,
        running = c.running - d.running,
        succeeded = c.succeeded - d.succeeded,
        failed = c.failed - d.failed,
        cancelled = c.cancelled - d.cancelled
    FROM (
        SELECT release_id, batch,
               COUNT(*) FILTER (WHERE state = 'pending') AS pending,
               COUNT(*) FILTER (WHERE state = 'dispatched') AS dispatched,
               COUNT(*) FILTER (WHERE state = 'running') AS running,
               COUNT(*) FILTER (WHERE state = 'succeeded') AS succeeded,
               COUNT(*) FILTER (WHERE state = 'failed') AS failed,
               COUNT(*) FILTER (WHERE state = 'cancelled') AS cancelled
        FROM old_tasks GROUP BY release_id, batch
    ) AS d
    WHERE c.release_id = d.release_id AND c.batch = d.batch;
    RETURN NULL;
END
$$;

CREATE TRIGGER release_batch_counts_on_delete
AFTER DELETE ON release_tasks
REFERENCING OLD TABLE AS old_tasks
FOR EACH STATEMENT EXECUTE FUNCTION release_batch_counts_on_delete();
