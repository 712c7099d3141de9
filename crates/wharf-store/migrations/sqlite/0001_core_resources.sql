-- The core resources of Wharf: credentials, instances, applications with their
-- groups and deployments, and registries. Releases, per-instance tasks and steps
-- come in later migrations.
--
-- Conventions, kept by every later migration:
--   * times are INTEGER unix milliseconds (UTC), columns named *_at;
--   * booleans are INTEGER 0/1;
--   * labels are JSON text (an object of string to string);
--   * a deployment's type is its wire name ('docker-image', 'command');
--   * tables are STRICT, so a value of the wrong type is refused, not coerced;
--   * application-scoped rows are keyed by (app, name), and point at their
--     application with a foreign key on `app`.
-- The store checks parents and dependants explicitly inside its transactions so
-- that it can name them in errors; the foreign keys are the backstop.

CREATE TABLE api_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    -- Hex SHA-256 of the secret; the secret itself is never stored.
    hash       TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE registration_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uses       INTEGER NOT NULL CHECK (uses >= 0),
    -- Decremented by each registration with `UPDATE ... WHERE uses_left > 0`, so
    -- concurrent registrations can never take more uses than there are.
    uses_left  INTEGER NOT NULL CHECK (uses_left >= 0)
) STRICT;

CREATE INDEX registration_tokens_by_created_at ON registration_tokens (created_at, id);

CREATE TABLE instances (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    hostname          TEXT    NOT NULL,
    address           TEXT    NOT NULL,
    os                TEXT    NOT NULL,
    arch              TEXT    NOT NULL,
    agent_version     TEXT    NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    -- Hex SHA-256 of the agent's credential.
    credential_hash   TEXT    NOT NULL UNIQUE,
    -- The scaling group the agent registered for, by name; it is not a foreign
    -- key yet because scaling groups are not stored yet.
    scaling_group     TEXT,
    registered_at     INTEGER NOT NULL,
    last_heartbeat_at INTEGER
) STRICT;

CREATE TABLE apps (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE registries (
    name             TEXT    NOT NULL PRIMARY KEY,
    endpoint         TEXT    NOT NULL,
    private_endpoint TEXT,
    username         TEXT,
    -- Nonce and ciphertext of the password, sealed by the server.
    password_sealed  BLOB,
    insecure         INTEGER NOT NULL CHECK (insecure IN (0, 1)),
    created_at       INTEGER NOT NULL
) STRICT;

-- One row per revision of an application. Immutable once created.
CREATE TABLE deployments (
    app                   TEXT    NOT NULL REFERENCES apps (name),
    name                  TEXT    NOT NULL,
    -- 'docker-image' or 'command'; no CHECK, so that a new type needs no table
    -- rebuild: the store refuses to read a value it does not know.
    kind                  TEXT    NOT NULL,
    -- The image fields are all set (docker-image) or all NULL (command).
    image_registry        TEXT    REFERENCES registries (name),
    image_namespace       TEXT,
    image_repository      TEXT,
    image_tag             TEXT,
    image_private_network INTEGER CHECK (image_private_network IN (0, 1)),
    workdir               TEXT    NOT NULL,
    start_script          TEXT    NOT NULL,
    stop_script           TEXT    NOT NULL,
    -- The verify check: URL and status are set together; the body is optional.
    verify_url            TEXT,
    verify_expect_status  INTEGER,
    verify_expect_body    TEXT,
    pull_timeout_secs     INTEGER NOT NULL,
    script_timeout_secs   INTEGER NOT NULL,
    verify_timeout_secs   INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    PRIMARY KEY (app, name),
    CHECK ((image_registry IS NULL) = (image_namespace IS NULL)
       AND (image_registry IS NULL) = (image_repository IS NULL)
       AND (image_registry IS NULL) = (image_tag IS NULL)
       AND (image_registry IS NULL) = (image_private_network IS NULL)),
    CHECK ((verify_url IS NULL) = (verify_expect_status IS NULL)),
    CHECK (verify_expect_body IS NULL OR verify_url IS NOT NULL)
) STRICT;

CREATE INDEX deployments_by_registry ON deployments (image_registry);

-- Application groups. Named app_groups rather than groups because GROUP and
-- GROUPS are SQL keywords.
CREATE TABLE app_groups (
    app                 TEXT    NOT NULL REFERENCES apps (name),
    name                TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    -- The deployment the group last published successfully, and the one before
    -- it (what a rollback publishes). A NULL column is not checked by SQLite.
    current_deployment  TEXT,
    previous_deployment TEXT,
    PRIMARY KEY (app, name),
    FOREIGN KEY (app, current_deployment) REFERENCES deployments (app, name),
    FOREIGN KEY (app, previous_deployment) REFERENCES deployments (app, name)
) STRICT;

-- Which instances are in which group, and what each runs there. Deleting an
-- instance removes its memberships; a group with members cannot be deleted.
CREATE TABLE group_members (
    app          TEXT    NOT NULL,
    group_name   TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    -- The deployment this instance last ran successfully in this group, by name
    -- within `app`, and the digest of the image it pulled.
    deployment   TEXT,
    image_digest TEXT,
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (app, group_name, instance_id),
    FOREIGN KEY (app, group_name) REFERENCES app_groups (app, name)
) STRICT;

CREATE INDEX group_members_by_instance ON group_members (instance_id);
