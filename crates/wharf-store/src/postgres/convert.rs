//! The conversions of record fields to and from columns: the SQLite backend's,
//! since both schemas store times as unix milliseconds, labels as JSON text and
//! counts as 64-bit integers.

pub(super) use crate::sqlite::convert::{
    labels, labels_json, millis, optional_time, time, unsigned,
};
