//! Backing up and restoring a server on the embedded store: a consistent copy of
//! the SQLite database taken while the server runs, and a new data directory
//! made from such a copy. (A PostgreSQL store is backed up with PostgreSQL's own
//! tools, `pg_dump`.)

use std::path::{Path, PathBuf};

/// Why a backup or a restore did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path} exists already; refusing to overwrite it (name a new file)")]
    TargetExists { path: PathBuf },
    #[error("cannot write the backup in {dir}: {source}")]
    TargetDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir} is not empty; restore into a new or empty directory")]
    NotEmpty { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable backup: {source}")]
    NotABackup {
        path: PathBuf,
        #[source]
        source: wharf_store::StoreError,
    },
    #[error("cannot copy the database {path}: {source}")]
    Copy {
        path: PathBuf,
        #[source]
        source: wharf_store::StoreError,
    },
    #[error("{path} is not a secret key: it must hold exactly 32 bytes, it holds {len}")]
    NotAKey { path: PathBuf, len: usize },
}

/// Copies the database of the data directory `data_dir` to the new file `to`;
/// its size in bytes.
pub fn backup(data_dir: &Path, to: &Path) -> Result<u64, BackupError> {
    if to.exists() {
        return Err(BackupError::TargetExists {
            path: to.to_path_buf(),
        });
    }
    // The file is made first, empty and private (`VACUUM INTO` fills an empty
    // file): so an unwritable place is named as such rather than as a database
    // error, and the copy is never readable by others, not even while written.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => BackupError::TargetExists {
                    path: to.to_path_buf(),
                },
                _ => BackupError::TargetDir {
                    dir: to
                        .parent()
                        .filter(|dir| !dir.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .to_path_buf(),
                    source,
                },
            })?;
    }
    let db = data_dir.join("wharf.db");
    wharf_store::sqlite::backup::backup(&db, to).map_err(|source| {
        // A copy that failed half-way is not left behind to be taken for one.
        let _ = std::fs::remove_file(to);
        BackupError::Copy { path: db, source }
    })
}

/// Makes the data directory `data_dir` (new or empty) from the backup `from`,
/// with the sealing key `secret_key` if given. The backup is checked first.
pub fn restore(from: &Path, data_dir: &Path, secret_key: Option<&Path>) -> Result<(), BackupError> {
    wharf_store::sqlite::backup::check_backup(from).map_err(|source| BackupError::NotABackup {
        path: from.to_path_buf(),
        source,
    })?;
    let key = match secret_key {
        Some(path) => {
            let key = std::fs::read(path).map_err(|source| BackupError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if key.len() != 32 {
                return Err(BackupError::NotAKey {
                    path: path.to_path_buf(),
                    len: key.len(),
                });
            }
            Some(key)
        }
        None => None,
    };
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty {
                dir: data_dir.to_path_buf(),
            });
        }
    }
    let write = |path: PathBuf, source| BackupError::Write { path, source };
    crate::secrets::create_private_dir(data_dir).map_err(|e| write(data_dir.to_path_buf(), e))?;
    let db = data_dir.join("wharf.db");
    let bytes = std::fs::read(from).map_err(|source| BackupError::Read {
        path: from.to_path_buf(),
        source,
    })?;
    crate::secrets::write_private_file(&db, &bytes).map_err(|e| write(db.clone(), e))?;
    if let Some(key) = key {
        let path = data_dir.join("secret.key");
        crate::secrets::write_private_file(&path, &key).map_err(|e| write(path.clone(), e))?;
    }
    Ok(())
}
