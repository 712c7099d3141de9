//! Turning database failures and refusals into [`StoreError`]s: constraint
//! violations, and the readable "in use by" lists of refused deletes.

use crate::StoreError;

/// How many names an "in use by" list shows before it only counts the rest.
const LISTED_NAMES: usize = 10;

/// Maps the failure of an INSERT: a unique violation means `kind name` exists.
/// Callers with several unique columns check them first, to name the one taken.
pub(super) fn insert_failed(err: rusqlite::Error, kind: &'static str, name: &str) -> StoreError {
    insert_with_parent_failed(err, (kind, name), None)
}

/// Maps the failure of an INSERT into a table with foreign keys, whose parents
/// the caller has checked already; a foreign key violation can then only come
/// from a writer outside this store. SQLite does not say which foreign key
/// failed, so the caller names the parent it checks first.
pub(super) fn insert_with_parent_failed(
    err: rusqlite::Error,
    duplicate: (&'static str, &str),
    missing_parent: Option<(&'static str, &str)>,
) -> StoreError {
    if is_unique_violation(&err) {
        return already_exists(duplicate.0, duplicate.1);
    }
    if let (true, Some((kind, name))) = (is_foreign_key_violation(&err), missing_parent) {
        return not_found(kind, name);
    }
    StoreError::Backend(err)
}

/// Maps the failure of a DELETE whose dependants the caller has checked already:
/// a foreign key violation means something still refers to the row.
pub(super) fn delete_failed(err: rusqlite::Error, kind: &'static str, name: &str) -> StoreError {
    if is_foreign_key_violation(&err) {
        return StoreError::InUse {
            kind,
            name: name.to_owned(),
            by: "other records".to_owned(),
        };
    }
    StoreError::Backend(err)
}

/// The SQLite extended result code of a failed statement, if it has one.
fn extended_code(err: &rusqlite::Error) -> Option<std::ffi::c_int> {
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    }
}

/// A UNIQUE or PRIMARY KEY constraint refused the statement.
pub(super) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        extended_code(err),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// A FOREIGN KEY constraint refused the statement.
pub(super) fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    extended_code(err) == Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// The name of a row scoped to an application, as errors show it: `app/name`.
pub(crate) fn scoped(app: &str, name: &str) -> String {
    format!("{app}/{name}")
}

pub(crate) fn not_found(kind: &'static str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

pub(crate) fn already_exists(kind: &'static str, name: &str) -> StoreError {
    StoreError::AlreadyExists {
        kind,
        name: name.to_owned(),
    }
}

/// Names dependants by kind, e.g. `groups prod, staging` or `deployment v1`;
/// `None` when there are none. Long lists end with how many more there are.
pub(crate) fn named(singular: &str, plural: &str, names: &[String]) -> Option<String> {
    let noun = match names.len() {
        0 => return None,
        1 => singular,
        _ => plural,
    };
    let shown = names
        .iter()
        .take(LISTED_NAMES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let rest = names.len().saturating_sub(LISTED_NAMES);
    Some(if rest == 0 {
        format!("{noun} {shown}")
    } else {
        format!("{noun} {shown} and {rest} more")
    })
}

/// Counts dependants, e.g. `1 instance` or `2 instances`; `None` for zero.
pub(crate) fn counted(singular: &str, plural: &str, count: u64) -> Option<String> {
    match count {
        0 => None,
        1 => Some(format!("1 {singular}")),
        n => Some(format!("{n} {plural}")),
    }
}

/// Refuses a delete if any dependants were found, joining their descriptions:
/// `groups prod, staging and deployments v1, v2`.
pub(crate) fn refuse_if_used(
    kind: &'static str,
    name: &str,
    dependants: impl IntoIterator<Item = Option<String>>,
) -> Result<(), StoreError> {
    let parts: Vec<String> = dependants.into_iter().flatten().collect();
    if parts.is_empty() {
        return Ok(());
    }
    Err(StoreError::InUse {
        kind,
        name: name.to_owned(),
        by: parts.join(" and "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_naturally() {
        let names = |n: usize| (1..=n).map(|i| format!("v{i}")).collect::<Vec<_>>();
        assert_eq!(named("group", "groups", &[]), None);
        assert_eq!(
            named("group", "groups", &names(1)).as_deref(),
            Some("group v1")
        );
        assert_eq!(
            named("groups", "groups", &names(2)).as_deref(),
            Some("groups v1, v2")
        );
        assert_eq!(
            named("d", "deployments", &names(12)).as_deref(),
            Some("deployments v1, v2, v3, v4, v5, v6, v7, v8, v9, v10 and 2 more")
        );
        assert_eq!(counted("instance", "instances", 0), None);
        assert_eq!(
            counted("instance", "instances", 1).as_deref(),
            Some("1 instance")
        );
        assert_eq!(
            counted("instance", "instances", 3).as_deref(),
            Some("3 instances")
        );
    }

    #[test]
    fn refusals_join_their_reasons() {
        assert!(refuse_if_used("application", "shop", [None, None]).is_ok());
        let err = refuse_if_used(
            "application",
            "shop",
            [
                Some("group prod".to_owned()),
                Some("deployment v1".to_owned()),
            ],
        );
        match err {
            Err(StoreError::InUse { kind, name, by }) => {
                assert_eq!((kind, name.as_str()), ("application", "shop"));
                assert_eq!(by, "group prod and deployment v1");
            }
            other => panic!("expected InUse, got {other:?}"),
        }
    }
}
