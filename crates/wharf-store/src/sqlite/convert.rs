//! Conversions between record fields and the column types of the SQLite schema:
//! times as unix milliseconds, labels as JSON text, counts as INTEGER.

use crate::StoreError;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A time as stored: unix milliseconds. Anything finer than a millisecond is
/// dropped, so callers that compare round-tripped records should use whole
/// milliseconds.
pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Reads back a time stored by [`millis`].
pub(crate) fn time(column: &str, value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(value)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} {value} is not a valid time")))
}

pub(crate) fn optional_time(
    column: &str,
    value: Option<i64>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    value.map(|value| time(column, value)).transpose()
}

/// Labels as stored: a JSON object.
pub(crate) fn labels_json(labels: &BTreeMap<String, String>) -> Result<String, StoreError> {
    // A map of strings always serializes; the error arm is there so that a future
    // change of type cannot turn into a panic.
    serde_json::to_string(labels)
        .map_err(|err| StoreError::Corrupt(format!("labels could not be encoded: {err}")))
}

pub(crate) fn labels(value: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(value).map_err(|err| {
        StoreError::Corrupt(format!(
            "labels {value:?} are not a JSON object of strings: {err}"
        ))
    })
}

/// Reads back an unsigned number stored as INTEGER, refusing values that do not
/// fit the record's type.
pub(crate) fn unsigned<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value} is out of range")))
}

/// Reads back a boolean stored as INTEGER 0 or 1.
pub(super) fn boolean(column: &str, value: i64) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!(
            "{column} {other} is not 0 or 1"
        ))),
    }
}
