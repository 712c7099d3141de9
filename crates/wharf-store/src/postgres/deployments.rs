//! Deployments: the `deployments` table, one explicit column per field of a
//! [`DeploymentRecord`]. Errors name a deployment as `app/deployment`.

use super::convert::{millis, time, unsigned};
use super::failure::{
    delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::query::{self, Db};
use super::{apps, registries, releases};
use crate::{DeploymentRecord, StoreError, StoreResult};
use tokio_postgres::Row;
use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};

const DEPLOYMENT_COLUMNS: &str = "app, name, kind, image_registry, image_namespace, \
     image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
     verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
     script_timeout_secs, verify_timeout_secs, created_at";

/// Reads a row of [`DEPLOYMENT_COLUMNS`], in that order.
fn deployment(row: &Row) -> StoreResult<DeploymentRecord> {
    let app: String = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let which = scoped(&app, &name);
    let kind: String = row.try_get(2)?;
    let kind = DeploymentKind::parse(&kind)
        .map_err(|err| StoreError::Corrupt(format!("deployment {which}: {}", err.message)))?;
    let image = match (
        row.try_get::<_, Option<String>>(3)?,
        row.try_get::<_, Option<String>>(4)?,
        row.try_get::<_, Option<String>>(5)?,
        row.try_get::<_, Option<String>>(6)?,
        row.try_get::<_, Option<bool>>(7)?,
    ) {
        (Some(registry), Some(namespace), Some(repository), Some(tag), Some(private_network)) => {
            Some(ImageSpec {
                registry,
                namespace,
                repository,
                tag,
                private_network,
            })
        }
        (None, None, None, None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "deployment {which} has some image fields but not all"
            )))
        }
    };
    let verify = match (
        row.try_get::<_, Option<String>>(11)?,
        row.try_get::<_, Option<i64>>(12)?,
        row.try_get::<_, Option<String>>(13)?,
    ) {
        (Some(url), Some(status), expect_body) => Some(VerifySpec {
            url,
            expect_status: unsigned("deployments.verify_expect_status", status)?,
            expect_body,
        }),
        (None, None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "deployment {which} has some verify fields but not all"
            )))
        }
    };
    Ok(DeploymentRecord {
        kind,
        image,
        verify,
        workdir: row.try_get(8)?,
        start_script: row.try_get(9)?,
        stop_script: row.try_get(10)?,
        timeouts: Timeouts {
            pull_secs: unsigned("deployments.pull_timeout_secs", row.try_get(14)?)?,
            script_secs: unsigned("deployments.script_timeout_secs", row.try_get(15)?)?,
            verify_secs: unsigned("deployments.verify_timeout_secs", row.try_get(16)?)?,
        },
        created_at: time("deployments.created_at", row.try_get(17)?)?,
        app,
        name,
    })
}

/// Fails with `NotFound` unless the application has this deployment.
pub(super) async fn require(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    let sql = "SELECT EXISTS (SELECT 1 FROM deployments WHERE app = $1 AND name = $2)";
    if query::exists(tx, sql, &[&app, &name]).await? {
        Ok(())
    } else {
        Err(not_found("deployment", &scoped(app, name)))
    }
}

/// Creates a deployment of an existing application, naming an existing registry
/// if it has an image.
pub(super) async fn create(tx: &impl Db, d: &DeploymentRecord) -> StoreResult<()> {
    apps::require(tx, &d.app).await?;
    if let Some(image) = &d.image {
        registries::require(tx, &image.registry).await?;
    }
    let image = d.image.as_ref();
    let verify = d.verify.as_ref();
    query::execute(
        tx,
        "INSERT INTO deployments (app, name, kind, image_registry, image_namespace, \
         image_repository, image_tag, image_private_network, workdir, start_script, stop_script, \
         verify_url, verify_expect_status, verify_expect_body, pull_timeout_secs, \
         script_timeout_secs, verify_timeout_secs, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        &[
            &d.app,
            &d.name,
            &d.kind.as_str(),
            &image.map(|i| i.registry.as_str()),
            &image.map(|i| i.namespace.as_str()),
            &image.map(|i| i.repository.as_str()),
            &image.map(|i| i.tag.as_str()),
            &image.map(|i| i.private_network),
            &d.workdir,
            &d.start_script,
            &d.stop_script,
            &verify.map(|v| v.url.as_str()),
            &verify.map(|v| i64::from(v.expect_status)),
            &verify.and_then(|v| v.expect_body.as_deref()),
            &i64::from(d.timeouts.pull_secs),
            &i64::from(d.timeouts.script_secs),
            &i64::from(d.timeouts.verify_secs),
            &millis(d.created_at),
        ],
    )
    .await
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("deployment", &scoped(&d.app, &d.name)),
            Some(("application", &d.app)),
        )
    })?;
    Ok(())
}

pub(super) async fn list(tx: &impl Db, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
    apps::require(tx, app).await?;
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = $1 ORDER BY name");
    query::all(tx, &sql, &[&app])
        .await?
        .iter()
        .map(deployment)
        .collect()
}

pub(super) async fn fetch(tx: &impl Db, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = $1 AND name = $2");
    match query::optional(tx, &sql, &[&app, &name]).await? {
        Some(row) => deployment(&row),
        None => {
            // Say whether the application or only the deployment is missing.
            apps::require(tx, app).await?;
            Err(not_found("deployment", &scoped(app, name)))
        }
    }
}

/// Deletes a deployment that no group has as its current or previous one, and
/// that no release (active or finished) names. The row is locked first, so that
/// a release or group naming it created meanwhile waits for this transaction.
pub(super) async fn delete(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    apps::require(tx, app).await?;
    let sql = "SELECT 1 FROM deployments WHERE app = $1 AND name = $2 FOR UPDATE";
    if query::optional(tx, sql, &[&app, &name]).await?.is_none() {
        return Err(not_found("deployment", &scoped(app, name)));
    }
    let groups = query::all(
        tx,
        "SELECT name FROM app_groups \
         WHERE app = $1 AND (current_deployment = $2 OR previous_deployment = $2) ORDER BY name",
        &[&app, &name],
    )
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<Vec<String>, _>>()?;
    let release_ids = releases::naming(tx, app, None, Some(name)).await?;
    refuse_if_used(
        "deployment",
        &scoped(app, name),
        [
            named("group", "groups", &groups),
            named("release", "releases", &release_ids),
        ],
    )?;
    query::execute(
        tx,
        "DELETE FROM deployments WHERE app = $1 AND name = $2",
        &[&app, &name],
    )
    .await
    .map_err(|err| delete_failed(err, "deployment", &scoped(app, name)))?;
    Ok(())
}
