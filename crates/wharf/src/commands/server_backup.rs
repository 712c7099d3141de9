//! `wharf server backup` and `wharf server restore`: a consistent copy of the
//! embedded store taken while the server runs, and a data directory made from one
//! (the server library's `backup` module does the work).

use super::CommandContext;
use crate::error::CommandError;
use crate::output::clean;
use std::path::PathBuf;

/// What `wharf server` does besides serving.
#[derive(clap::Subcommand)]
pub enum ServerAction {
    /// Copy the server's SQLite database to a new file, consistently, while the
    /// server runs. Keep DATA_DIR/secret.key with it: the registry passwords in the
    /// database are sealed with that key. (A PostgreSQL store: use pg_dump.)
    Backup {
        /// The new file to write (refused if it exists).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// The server's data directory.
        #[arg(
            long,
            env = "WHARF_DATA_DIR",
            default_value = "wharf-data",
            value_name = "DIR"
        )]
        data_dir: PathBuf,
    },
    /// Make a data directory (new or empty) from a backup, checked first; then
    /// start `wharf server --data-dir DIR` on it.
    Restore {
        /// The backup file (`wharf server backup --to FILE`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data directory to make.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The secret.key backed up with the database, copied into the new
        /// directory (without it the server refuses to start on a database that
        /// holds sealed registry passwords).
        #[arg(long, value_name = "FILE")]
        secret_key: Option<PathBuf>,
    },
}

pub fn run(ctx: &CommandContext, action: ServerAction) -> Result<(), CommandError> {
    // `{:#}` writes the error and its causes on one line.
    let failed = |err: wharf_server::backup::BackupError| {
        CommandError::Failed(clean(&format!("{:#}", anyhow::Error::new(err))).into_owned())
    };
    match action {
        ServerAction::Backup { to, data_dir } => {
            let bytes = wharf_server::backup::backup(&data_dir, &to).map_err(failed)?;
            ctx.ui.print(
                &serde_json::json!({"backup": to, "bytes": bytes}),
                |_| {
                    format!(
                        "Backed up {} to {} ({bytes} bytes). Keep {} with it: the registry passwords are sealed with that key.",
                        data_dir.join("wharf.db").display(),
                        to.display(),
                        data_dir.join("secret.key").display()
                    )
                },
            )
        }
        ServerAction::Restore {
            from,
            data_dir,
            secret_key,
        } => {
            wharf_server::backup::restore(&from, &data_dir, secret_key.as_deref())
                .map_err(failed)?;
            let key_note = match &secret_key {
                Some(_) => String::new(),
                None => format!(
                    " Put the secret.key backed up with it into {} before starting the server.",
                    data_dir.display()
                ),
            };
            ctx.ui.print(
                &serde_json::json!({"restored": from, "data_dir": data_dir}),
                |_| {
                    format!(
                        "Restored {} into {}.{key_note} Then: wharf server --data-dir {}",
                        from.display(),
                        data_dir.display(),
                        data_dir.display()
                    )
                },
            )
        }
    }
}
