//! The typed error of every command and its mapping to an exit code and to the one
//! `error: ...` line printed on stderr.
//!
//! Exit codes: 0 success; 2 usage errors (bad flags or arguments, which clap reports
//! itself, and missing server or token configuration); 1 everything else (the server
//! refused the request, the server cannot be reached, a file cannot be read, a
//! followed release did not succeed); 130 when Ctrl-C stopped the following of a
//! release.

use crate::output::clean;
use std::error::Error as _;
use std::process::ExitCode;
use wharf_client::ClientError;

#[derive(Debug)]
pub enum CommandError {
    /// The command line is wrong in a way clap cannot see; exit code 2.
    Usage(String),
    /// No server or token is configured; exit code 2, like a usage error, because
    /// the fix is to pass `--server`/`--token` or to run `wharf login`.
    Config(String),
    /// A call to the server failed.
    Client(ClientError),
    /// The thing the command waited for did not succeed, such as a followed release
    /// that failed or was cancelled; exit code 1. The details are already printed.
    Failed(String),
    /// Ctrl-C ended the command; what to do next is already printed. Exit code 130,
    /// as a shell reports a command killed by SIGINT.
    Interrupted,
    /// Anything else, with its context chain.
    Internal(anyhow::Error),
    /// Stdout or stderr was closed (as by `wharf app list | head -1`): stop quietly.
    BrokenPipe,
}

impl CommandError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// Wraps a failed write to stdout or stderr.
    pub fn output(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Internal(anyhow::Error::new(err).context("cannot write the output"))
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Config(_) => ExitCode::from(2),
            // A bad --server URL, token or path argument is an input the user typed.
            Self::Client(
                ClientError::InvalidUrl { .. }
                | ClientError::InvalidToken
                | ClientError::InvalidArgument { .. },
            ) => ExitCode::from(2),
            Self::Client(_) | Self::Failed(_) | Self::Internal(_) => ExitCode::from(1),
            Self::Interrupted => ExitCode::from(130),
            Self::BrokenPipe => ExitCode::SUCCESS,
        }
    }

    /// The message printed after `error: `, on one line and escaped: it may contain
    /// text from the server.
    pub fn message(&self) -> Option<String> {
        let raw = match self {
            Self::BrokenPipe | Self::Interrupted => return None,
            Self::Usage(message) | Self::Config(message) | Self::Failed(message) => message.clone(),
            Self::Client(err) => client_message(err),
            Self::Internal(err) => format!("{err:#}"),
        };
        Some(clean(&raw).into_owned())
    }
}

fn client_message(err: &ClientError) -> String {
    match err {
        ClientError::Api {
            status,
            code,
            message,
            field,
        } => {
            let field = field
                .as_ref()
                .map(|f| format!("field: {f}, "))
                .unwrap_or_default();
            let hint = if *status == 401 {
                " (check the token: run `wharf login` or set WHARF_TOKEN)"
            } else {
                ""
            };
            format!("{message} [{field}code: {code}, HTTP {status}]{hint}")
        }
        ClientError::UnexpectedStatus { body, .. } if !body.trim().is_empty() => {
            let snippet: String = body.trim().chars().take(200).collect();
            format!("{err}: {snippet}")
        }
        // Transport errors: the outer message names the URL, the innermost cause
        // says what happened ("Connection refused"); the layers between are noise.
        _ => match root_cause(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    }
}

fn root_cause(err: &ClientError) -> Option<String> {
    let mut cause = err.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

impl From<ClientError> for CommandError {
    fn from(err: ClientError) -> Self {
        Self::Client(err)
    }
}

impl From<anyhow::Error> for CommandError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_name_the_field_and_code() {
        let err = CommandError::from(ClientError::Api {
            status: 400,
            code: "invalid_field".into(),
            message: "workdir must be absolute".into(),
            field: Some("workdir".into()),
        });
        assert_eq!(
            err.message().unwrap(),
            "workdir must be absolute [field: workdir, code: invalid_field, HTTP 400]"
        );
        assert_eq!(err.exit_code(), ExitCode::from(1));
    }

    #[test]
    fn server_text_is_escaped_onto_one_line() {
        let err = CommandError::from(ClientError::Api {
            status: 409,
            code: "already_exists".into(),
            message: "x\n\u{1b}[2J".into(),
            field: None,
        });
        let message = err.message().unwrap();
        assert!(
            !message.contains('\n') && !message.contains('\u{1b}'),
            "{message}"
        );
    }

    #[test]
    fn usage_and_config_errors_exit_2() {
        assert_eq!(CommandError::usage("x").exit_code(), ExitCode::from(2));
        assert_eq!(
            CommandError::Config("x".into()).exit_code(),
            ExitCode::from(2)
        );
    }
}
