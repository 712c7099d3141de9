-- Scaling groups: a name agents register for, bound to one application group.
-- A release on the bound group suspends the scaling group (a lease held by that
-- release); instances registering meanwhile are held and join on resume. The
-- conventions of 0001_core_resources.sql hold here too.

CREATE TABLE scaling_groups (
    name                 TEXT    NOT NULL PRIMARY KEY,
    app                  TEXT    NOT NULL,
    group_name           TEXT    NOT NULL,
    -- Commands the server runs (`bash -c`) when the group is suspended/resumed.
    on_suspend           TEXT,
    on_resume            TEXT,
    created_at           INTEGER NOT NULL,
    -- 'active' or 'suspended'; a suspended group names the release holding it.
    state                TEXT    NOT NULL,
    held_by              TEXT,
    suspended_at         INTEGER,
    -- The release that held the lease last (kept after resume, for the hooks).
    last_release         TEXT,
    -- Hooks still to run, kept here so that a restarted server runs them.
    suspend_hook_pending INTEGER NOT NULL DEFAULT 0 CHECK (suspend_hook_pending IN (0, 1)),
    resume_hook_pending  INTEGER NOT NULL DEFAULT 0 CHECK (resume_hook_pending IN (0, 1)),
    -- Failed attempts of the current on-resume hook, when it may be tried again,
    -- and the last hook error (cleared when an on-resume hook succeeds).
    resume_attempts      INTEGER NOT NULL DEFAULT 0 CHECK (resume_attempts >= 0),
    next_hook_at         INTEGER,
    last_error           TEXT,
    CHECK ((state = 'suspended') = (held_by IS NOT NULL)),
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name)
) STRICT;

CREATE INDEX scaling_groups_by_group ON scaling_groups (app, group_name);

-- Instances that registered while their scaling group was suspended. On resume
-- they join the group (joined = 1) and stay here until their catch-up release
-- has been created, so that a restart in between still catches them up.
CREATE TABLE scaling_held (
    scaling_group TEXT    NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    instance_id   TEXT    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    held_at       INTEGER NOT NULL,
    joined        INTEGER NOT NULL DEFAULT 0 CHECK (joined IN (0, 1)),
    PRIMARY KEY (scaling_group, instance_id)
) STRICT;

-- What happened to the scaling group's instances: 'join', 'held' or 'leave'. The
-- instance is not a foreign key: the history outlives a deleted instance.
CREATE TABLE scaling_activities (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    scaling_group TEXT    NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    instance_id   TEXT    NOT NULL,
    instance_name TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    at            INTEGER NOT NULL
) STRICT;

-- Every run of an on-suspend or on-resume command, with its (bounded) output.
CREATE TABLE scaling_hook_runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    scaling_group TEXT    NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    -- 'suspend' or 'resume'.
    hook          TEXT    NOT NULL,
    release_id    TEXT,
    attempt       INTEGER NOT NULL CHECK (attempt >= 1),
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    exit_code     INTEGER,
    output        TEXT    NOT NULL,
    error         TEXT
) STRICT;
