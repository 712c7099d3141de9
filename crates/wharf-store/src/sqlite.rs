//! SQLite backend (being written).
pub struct SqliteStore;
