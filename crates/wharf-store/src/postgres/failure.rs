//! Turning PostgreSQL failures into [`StoreError`]s: constraint violations by
//! their SQLSTATE and constraint name, and which failures a transaction may be
//! retried after.

use crate::StoreError;
use tokio_postgres::error::SqlState;

pub(super) use crate::sqlite::failure::{
    already_exists, counted, named, not_found, refuse_if_used, scoped,
};

fn code(err: &tokio_postgres::Error) -> Option<&SqlState> {
    err.code()
}

/// A UNIQUE or PRIMARY KEY constraint refused the statement.
pub(super) fn is_unique_violation(err: &tokio_postgres::Error) -> bool {
    code(err) == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A FOREIGN KEY constraint refused the statement.
pub(super) fn is_foreign_key_violation(err: &tokio_postgres::Error) -> bool {
    code(err) == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// The name of the constraint that refused the statement, if one did.
pub(super) fn constraint(err: &tokio_postgres::Error) -> Option<&str> {
    err.as_db_error().and_then(|db| db.constraint())
}

/// Maps the failure of an INSERT: a unique violation means `kind name` exists.
pub(super) fn insert_failed(
    err: tokio_postgres::Error,
    kind: &'static str,
    name: &str,
) -> StoreError {
    insert_with_parent_failed(err, (kind, name), None)
}

/// Maps the failure of an INSERT into a table with foreign keys whose parents
/// the caller has checked already: a foreign key violation then means another
/// transaction deleted the parent meanwhile, named by the caller.
pub(super) fn insert_with_parent_failed(
    err: tokio_postgres::Error,
    duplicate: (&'static str, &str),
    missing_parent: Option<(&'static str, &str)>,
) -> StoreError {
    if is_unique_violation(&err) {
        return already_exists(duplicate.0, duplicate.1);
    }
    if let (true, Some((kind, name))) = (is_foreign_key_violation(&err), missing_parent) {
        return not_found(kind, name);
    }
    StoreError::Postgres(err)
}

/// Maps the failure of a DELETE whose dependants the caller has checked already:
/// a foreign key violation means something (written meanwhile) refers to the row.
pub(super) fn delete_failed(
    err: tokio_postgres::Error,
    kind: &'static str,
    name: &str,
) -> StoreError {
    if is_foreign_key_violation(&err) {
        return StoreError::InUse {
            kind,
            name: name.to_owned(),
            by: "other records".to_owned(),
        };
    }
    StoreError::Postgres(err)
}

/// Whether a transaction that failed with `err` may simply be run again: it
/// lost a serialization conflict or was chosen to break a deadlock, and rolled
/// back whole.
pub(super) fn retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Postgres(err) => matches!(
            code(err),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
        ),
        _ => false,
    }
}
