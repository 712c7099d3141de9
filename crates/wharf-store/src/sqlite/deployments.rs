//! Deployments: the `deployments` table, one explicit column per field of a
//! [`DeploymentRecord`]. Errors name a deployment as `app/deployment`.

use super::convert::{boolean, millis, time, unsigned};
use super::failure::{
    delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::{apps, query, registries, releases};
use crate::{DeploymentRecord, StoreError, StoreResult};
use rusqlite::{params, Connection, Row};
use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};

const DEPLOYMENT_COLUMNS: &str = "app, name, kind, image_registry, image_namespace, \
     image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
     verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
     script_timeout_secs, verify_timeout_secs, created_at";

struct DeploymentRow {
    app: String,
    name: String,
    kind: String,
    image: ImageColumns,
    workdir: String,
    start_script: String,
    stop_script: String,
    verify: VerifyColumns,
    timeouts: TimeoutColumns,
    created_at: i64,
}

struct ImageColumns {
    image_registry: Option<String>,
    image_namespace: Option<String>,
    image_repository: Option<String>,
    image_tag: Option<String>,
    image_private_network: Option<i64>,
}

struct VerifyColumns {
    verify_url: Option<String>,
    verify_expect_status: Option<i64>,
    verify_expect_body: Option<String>,
}

struct TimeoutColumns {
    pull_timeout_secs: i64,
    script_timeout_secs: i64,
    verify_timeout_secs: i64,
}

impl DeploymentRow {
    /// Reads a row of [`DEPLOYMENT_COLUMNS`], in that order.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(DeploymentRow {
            app: row.get(0)?,
            name: row.get(1)?,
            kind: row.get(2)?,
            image: ImageColumns {
                image_registry: row.get(3)?,
                image_namespace: row.get(4)?,
                image_repository: row.get(5)?,
                image_tag: row.get(6)?,
                image_private_network: row.get(7)?,
            },
            workdir: row.get(8)?,
            start_script: row.get(9)?,
            stop_script: row.get(10)?,
            verify: VerifyColumns {
                verify_url: row.get(11)?,
                verify_expect_status: row.get(12)?,
                verify_expect_body: row.get(13)?,
            },
            timeouts: TimeoutColumns {
                pull_timeout_secs: row.get(14)?,
                script_timeout_secs: row.get(15)?,
                verify_timeout_secs: row.get(16)?,
            },
            created_at: row.get(17)?,
        })
    }
}

impl TryFrom<DeploymentRow> for DeploymentRecord {
    type Error = StoreError;

    fn try_from(row: DeploymentRow) -> StoreResult<Self> {
        let which = scoped(&row.app, &row.name);
        let kind = DeploymentKind::parse(&row.kind)
            .map_err(|err| StoreError::Corrupt(format!("deployment {which}: {}", err.message)))?;
        Ok(DeploymentRecord {
            kind,
            image: image(&which, row.image)?,
            verify: verify(&which, row.verify)?,
            timeouts: timeouts(row.timeouts)?,
            created_at: time("deployments.created_at", row.created_at)?,
            app: row.app,
            name: row.name,
            workdir: row.workdir,
            start_script: row.start_script,
            stop_script: row.stop_script,
        })
    }
}

/// The image fields are all set or all NULL; the schema checks this too.
fn image(which: &str, columns: ImageColumns) -> StoreResult<Option<ImageSpec>> {
    match columns {
        ImageColumns {
            image_registry: Some(registry),
            image_namespace: Some(namespace),
            image_repository: Some(repository),
            image_tag: Some(tag),
            image_private_network: Some(private_network),
        } => Ok(Some(ImageSpec {
            registry,
            namespace,
            repository,
            tag,
            private_network: boolean("deployments.image_private_network", private_network)?,
        })),
        ImageColumns {
            image_registry: None,
            image_namespace: None,
            image_repository: None,
            image_tag: None,
            image_private_network: None,
        } => Ok(None),
        _ => Err(StoreError::Corrupt(format!(
            "deployment {which} has some image fields but not all"
        ))),
    }
}

/// The verify URL and status are set together; the body only with them.
fn verify(which: &str, columns: VerifyColumns) -> StoreResult<Option<VerifySpec>> {
    match columns {
        VerifyColumns {
            verify_url: Some(url),
            verify_expect_status: Some(status),
            verify_expect_body: expect_body,
        } => Ok(Some(VerifySpec {
            url,
            expect_status: unsigned("deployments.verify_expect_status", status)?,
            expect_body,
        })),
        VerifyColumns {
            verify_url: None,
            verify_expect_status: None,
            verify_expect_body: None,
        } => Ok(None),
        _ => Err(StoreError::Corrupt(format!(
            "deployment {which} has some verify fields but not all"
        ))),
    }
}

fn timeouts(columns: TimeoutColumns) -> StoreResult<Timeouts> {
    Ok(Timeouts {
        pull_secs: unsigned("deployments.pull_timeout_secs", columns.pull_timeout_secs)?,
        script_secs: unsigned(
            "deployments.script_timeout_secs",
            columns.script_timeout_secs,
        )?,
        verify_secs: unsigned(
            "deployments.verify_timeout_secs",
            columns.verify_timeout_secs,
        )?,
    })
}

/// Fails with `NotFound` unless the application has this deployment.
pub(super) fn require(conn: &Connection, app: &str, name: &str) -> StoreResult<()> {
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM deployments WHERE app = ? AND name = ?)",
        params![app, name],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("deployment", &scoped(app, name)))
    }
}

/// Creates a deployment of an existing application, naming an existing registry
/// if it has an image.
pub(super) fn create(conn: &Connection, deployment: &DeploymentRecord) -> StoreResult<()> {
    apps::require(conn, &deployment.app)?;
    if let Some(image) = &deployment.image {
        registries::require(conn, &image.registry)?;
    }
    insert(conn, deployment).map_err(|err| {
        insert_with_parent_failed(
            err,
            ("deployment", &scoped(&deployment.app, &deployment.name)),
            Some(("application", &deployment.app)),
        )
    })
}

fn insert(conn: &Connection, d: &DeploymentRecord) -> rusqlite::Result<()> {
    let image = d.image.as_ref();
    let verify = d.verify.as_ref();
    query::execute(
        conn,
        "INSERT INTO deployments (app, name, kind, image_registry, image_namespace, \
         image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
         verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
         script_timeout_secs, verify_timeout_secs, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            d.app,
            d.name,
            d.kind.as_str(),
            image.map(|i| i.registry.as_str()),
            image.map(|i| i.namespace.as_str()),
            image.map(|i| i.repository.as_str()),
            image.map(|i| i.tag.as_str()),
            image.map(|i| i64::from(i.private_network)),
            d.workdir,
            d.start_script,
            d.stop_script,
            verify.map(|v| v.url.as_str()),
            verify.map(|v| i64::from(v.expect_status)),
            verify.and_then(|v| v.expect_body.as_deref()),
            i64::from(d.timeouts.pull_secs),
            i64::from(d.timeouts.script_secs),
            i64::from(d.timeouts.verify_secs),
            millis(d.created_at),
        ],
    )?;
    Ok(())
}

pub(super) fn list(conn: &Connection, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
    apps::require(conn, app)?;
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = ? ORDER BY name");
    query::all(conn, &sql, [app], DeploymentRow::read)?
        .into_iter()
        .map(DeploymentRecord::try_from)
        .collect()
}

pub(super) fn fetch(conn: &Connection, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = ? AND name = ?");
    let row = query::optional(conn, &sql, params![app, name], DeploymentRow::read)?;
    match row {
        Some(row) => row.try_into(),
        None => {
            // Say whether the application or only the deployment is missing.
            apps::require(conn, app)?;
            Err(not_found("deployment", &scoped(app, name)))
        }
    }
}

/// Deletes a deployment that no group has as its current or previous one, and
/// that no release (active or finished: a release keeps its deployment) names.
pub(super) fn delete(conn: &Connection, app: &str, name: &str) -> StoreResult<()> {
    apps::require(conn, app)?;
    require(conn, app, name)?;
    let groups: Vec<String> = query::all(
        conn,
        "SELECT name FROM app_groups \
         WHERE app = ?1 AND (current_deployment = ?2 OR previous_deployment = ?2) ORDER BY name",
        params![app, name],
        |row| row.get(0),
    )?;
    let release_ids = releases::naming(conn, app, None, Some(name))?;
    refuse_if_used(
        "deployment",
        &scoped(app, name),
        [
            named("group", "groups", &groups),
            named("release", "releases", &release_ids),
        ],
    )?;
    query::execute(
        conn,
        "DELETE FROM deployments WHERE app = ? AND name = ?",
        params![app, name],
    )
    .map_err(|err| delete_failed(err, "deployment", &scoped(app, name)))?;
    Ok(())
}
