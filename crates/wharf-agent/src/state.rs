//! What the agent keeps on disk, in its state directory (mode 0700):
//!
//! - `state.json` (mode 0600): the server it registered with, its instance id and name,
//!   and its credential. Written once, at registration.
//! - `journal.json` (mode 0600): the step of the current task, written before the step
//!   begins and again (with its result) when it ends, removed once every report of the
//!   task was acknowledged. An agent killed mid-step finds it on the next start and
//!   reports that step precisely.
//!
//! Both files are replaced atomically (a temporary file in the same directory, then a
//! rename), so a crash never leaves half a file behind.

use std::fmt;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the registration state in the state directory.
pub const STATE_FILE: &str = "state.json";
/// The name of the step journal in the state directory.
pub const JOURNAL_FILE: &str = "journal.json";

/// The agent's registration, as kept in `state.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The server URL, normalised (see [`crate::link::normalize_server_url`]).
    pub server: String,
    pub instance_id: String,
    pub name: String,
    /// The agent's bearer credential. Never logged; `Debug` hides it.
    pub credential: String,
}

impl fmt::Debug for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentState")
            .field("server", &self.server)
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The step the agent is in, as kept in `journal.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub release_id: String,
    pub step: String,
    /// Set once the step ended, until its report is acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<JournaledEnd>,
}

/// How a journaled step ended (what its `End` report says).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledEnd {
    pub succeeded: bool,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
}

/// Creates the state directory (with parents) with mode 0700 if it is missing. An
/// existing directory is left as it is (it may be shared, like `/tmp`), with a warning
/// if others can read it; the files in it are private either way.
pub fn prepare_state_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o7777),
            "the state directory is accessible to other users; 0700 is recommended"
        );
    }
    Ok(())
}

/// Reads `state.json`; `Ok(None)` if there is none. A state file that others can read
/// is made private (0600) again.
pub fn load_state(path: &Path) -> Result<Option<AgentState>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the agent state was readable by others; making it private (0600)");
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
    let state: AgentState = serde_json::from_str(&text).map_err(|err| StateFileError::Invalid {
        path: path.to_owned(),
        // serde_json's messages name the position and the field, never the values.
        reason: err.to_string(),
    })?;
    if state.credential.is_empty() || state.instance_id.is_empty() {
        return Err(StateFileError::Invalid {
            path: path.to_owned(),
            reason: "instance_id or credential is empty".to_owned(),
        });
    }
    Ok(Some(state))
}

/// Writes `state.json` atomically with mode 0600.
pub fn save_state(path: &Path, state: &AgentState) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    write_private(path, &json)
}

/// Errors reading `state.json`.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid agent state ({reason})", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The step journal (`journal.json`).
#[derive(Clone, Debug)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(JOURNAL_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry left behind, if any. An unreadable or invalid journal is reported and
    /// treated as absent: it only makes reports more precise, and the server fails an
    /// abandoned task on its own.
    pub fn read(&self) -> Option<JournalEntry> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot read the step journal; ignoring it");
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(entry) => Some(entry),
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "the step journal is not valid; ignoring it");
                None
            }
        }
    }

    /// Replaces the entry. A failure is logged, not fatal (see [`Self::read`]).
    pub fn write(&self, entry: &JournalEntry) {
        let result = serde_json::to_vec(entry)
            .map_err(io::Error::other)
            .and_then(|json| write_private(&self.path, &json));
        if let Err(err) = result {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot write the step journal");
        }
    }

    /// Removes the entry.
    pub fn clear(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the step journal");
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: a private temporary file next to it, synced,
/// then renamed over it.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A leftover temporary file from an earlier run may have other permissions.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AgentState {
        AgentState {
            server: "http://127.0.0.1:7700".into(),
            instance_id: "i-0123456789abcdef".into(),
            name: "web-1".into(),
            credential: "wac_very-secret".into(),
        }
    }

    #[test]
    fn state_round_trips_privately_and_debug_hides_the_credential() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("a/b");
        prepare_state_dir(&state_dir).expect("state dir");
        let mode = std::fs::metadata(&state_dir)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        let path = state_dir.join(STATE_FILE);
        assert!(load_state(&path).expect("load").is_none());
        save_state(&path, &state()).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_state(&path).expect("load"), Some(state()));

        let text = format!("{:?}", state());
        assert!(!text.contains("very-secret"), "{text}");
    }

    #[test]
    fn invalid_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, b"{\"server\": 1}").expect("write");
        let err = load_state(&path).expect_err("invalid");
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn journal_writes_reads_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::new(dir.path());
        assert_eq!(journal.read(), None);
        let mut entry = JournalEntry {
            release_id: "r-0123456789abcdef".into(),
            step: "start".into(),
            end: None,
        };
        journal.write(&entry);
        assert_eq!(journal.read(), Some(entry.clone()));
        let mode = std::fs::metadata(journal.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        entry.end = Some(JournaledEnd {
            succeeded: false,
            exit_code: Some(3),
            message: None,
            image_digest: None,
        });
        journal.write(&entry);
        assert_eq!(journal.read(), Some(entry));
        journal.clear();
        assert_eq!(journal.read(), None);
        journal.clear();
    }

    #[test]
    fn a_journal_written_by_hand_without_end_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(JOURNAL_FILE),
            br#"{"release_id":"r-1","step":"stop"}"#,
        )
        .expect("write");
        let entry = Journal::new(dir.path()).read().expect("entry");
        assert_eq!(entry.step, "stop");
        assert_eq!(entry.end, None);
    }
}
