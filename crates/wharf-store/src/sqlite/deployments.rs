//! Deployments: the `deployments` table, one explicit column per field of a
//! [`DeploymentRecord`]. Errors name a deployment as `app/deployment`.

use super::convert::{boolean, millis, time, unsigned};
use super::failure::{
    delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::{apps, registries, releases};
use crate::{DeploymentRecord, StoreError, StoreResult};
use sqlx::SqliteConnection;
use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};

const DEPLOYMENT_COLUMNS: &str = "app, name, kind, image_registry, image_namespace, \
     image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
     verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
     script_timeout_secs, verify_timeout_secs, created_at";

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    app: String,
    name: String,
    kind: String,
    #[sqlx(flatten)]
    image: ImageColumns,
    workdir: String,
    start_script: String,
    stop_script: String,
    #[sqlx(flatten)]
    verify: VerifyColumns,
    #[sqlx(flatten)]
    timeouts: TimeoutColumns,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ImageColumns {
    image_registry: Option<String>,
    image_namespace: Option<String>,
    image_repository: Option<String>,
    image_tag: Option<String>,
    image_private_network: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct VerifyColumns {
    verify_url: Option<String>,
    verify_expect_status: Option<i64>,
    verify_expect_body: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TimeoutColumns {
    pull_timeout_secs: i64,
    script_timeout_secs: i64,
    verify_timeout_secs: i64,
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
pub(super) async fn require(conn: &mut SqliteConnection, app: &str, name: &str) -> StoreResult<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deployments WHERE app = ? AND name = ?)")
            .bind(app)
            .bind(name)
            .fetch_one(conn)
            .await?;
    if exists {
        Ok(())
    } else {
        Err(not_found("deployment", &scoped(app, name)))
    }
}

/// Creates a deployment of an existing application, naming an existing registry
/// if it has an image.
pub(super) async fn create(
    conn: &mut SqliteConnection,
    deployment: &DeploymentRecord,
) -> StoreResult<()> {
    apps::require(conn, &deployment.app).await?;
    if let Some(image) = &deployment.image {
        registries::require(conn, &image.registry).await?;
    }
    insert(conn, deployment).await.map_err(|err| {
        insert_with_parent_failed(
            err,
            ("deployment", &scoped(&deployment.app, &deployment.name)),
            Some(("application", &deployment.app)),
        )
    })
}

async fn insert(conn: &mut SqliteConnection, d: &DeploymentRecord) -> Result<(), sqlx::Error> {
    let image = d.image.as_ref();
    let verify = d.verify.as_ref();
    sqlx::query(
        "INSERT INTO deployments (app, name, kind, image_registry, image_namespace, \
         image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
         verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
         script_timeout_secs, verify_timeout_secs, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&d.app)
    .bind(&d.name)
    .bind(d.kind.as_str())
    .bind(image.map(|i| i.registry.as_str()))
    .bind(image.map(|i| i.namespace.as_str()))
    .bind(image.map(|i| i.repository.as_str()))
    .bind(image.map(|i| i.tag.as_str()))
    .bind(image.map(|i| i64::from(i.private_network)))
    .bind(&d.workdir)
    .bind(&d.start_script)
    .bind(&d.stop_script)
    .bind(verify.map(|v| v.url.as_str()))
    .bind(verify.map(|v| i64::from(v.expect_status)))
    .bind(verify.and_then(|v| v.expect_body.as_deref()))
    .bind(i64::from(d.timeouts.pull_secs))
    .bind(i64::from(d.timeouts.script_secs))
    .bind(i64::from(d.timeouts.verify_secs))
    .bind(millis(d.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn list(
    conn: &mut SqliteConnection,
    app: &str,
) -> StoreResult<Vec<DeploymentRecord>> {
    apps::require(conn, app).await?;
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = ? ORDER BY name");
    sqlx::query_as::<_, DeploymentRow>(&sql)
        .bind(app)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(DeploymentRecord::try_from)
        .collect()
}

pub(super) async fn fetch(
    conn: &mut SqliteConnection,
    app: &str,
    name: &str,
) -> StoreResult<DeploymentRecord> {
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = ? AND name = ?");
    let row = sqlx::query_as::<_, DeploymentRow>(&sql)
        .bind(app)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => row.try_into(),
        None => {
            // Say whether the application or only the deployment is missing.
            apps::require(conn, app).await?;
            Err(not_found("deployment", &scoped(app, name)))
        }
    }
}

/// Deletes a deployment that no group has as its current or previous one, and
/// that no release (active or finished: a release keeps its deployment) names.
pub(super) async fn delete(conn: &mut SqliteConnection, app: &str, name: &str) -> StoreResult<()> {
    apps::require(conn, app).await?;
    require(conn, app, name).await?;
    let groups: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM app_groups \
         WHERE app = ?1 AND (current_deployment = ?2 OR previous_deployment = ?2) ORDER BY name",
    )
    .bind(app)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let release_ids = releases::naming(&mut *conn, app, None, Some(name)).await?;
    refuse_if_used(
        "deployment",
        &scoped(app, name),
        [
            named("group", "groups", &groups),
            named("release", "releases", &release_ids),
        ],
    )?;
    sqlx::query("DELETE FROM deployments WHERE app = ? AND name = ?")
        .bind(app)
        .bind(name)
        .execute(conn)
        .await
        .map_err(|err| delete_failed(err, "deployment", &scoped(app, name)))?;
    Ok(())
}
