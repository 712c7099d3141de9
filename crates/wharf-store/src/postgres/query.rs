//! Small helpers over tokio-postgres for the table modules: every statement is
//! prepared once per connection (the pool's statement cache) and then only
//! bound and executed, and the error stays tokio-postgres's so that callers can
//! map constraint failures.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// What a table function runs its statements on: a transaction on a pooled
/// connection, or (for a read of one statement) the pooled connection itself.
pub(super) use deadpool_postgres::GenericClient as Db;

/// Statement parameters, in `$1, $2, ...` order.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Every row of `sql`.
pub(super) async fn all(tx: &impl Db, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query(&statement, params).await
}

/// The first row of `sql`, if there is one; more than one row is an error.
pub(super) async fn optional(
    tx: &impl Db,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query_opt(&statement, params).await
}

/// The one row of `sql` (a COUNT, an EXISTS).
pub(super) async fn one(tx: &impl Db, sql: &str, params: Params<'_>) -> Result<Row, Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query_one(&statement, params).await
}

/// Runs a statement that returns no rows; answers how many rows it changed.
pub(super) async fn execute(tx: &impl Db, sql: &str, params: Params<'_>) -> Result<u64, Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}

/// Whether `sql` (an `EXISTS (...)` query) answers true.
pub(super) async fn exists(tx: &impl Db, sql: &str, params: Params<'_>) -> Result<bool, Error> {
    one(tx, sql, params).await?.try_get(0)
}
