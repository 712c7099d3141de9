//! Wharf's host agent library: the agent itself ([`run`]: registration, heartbeats, the
//! long poll for work, running an assignment's steps while reporting them), the protocol
//! client it uses ([`link`]), and the executor pieces that run one deployment step on an
//! instance — the working directory, the image pull through the Docker Engine, the
//! stop/start/verify scripts — and the bounded output every step produces.

pub mod agent;
pub mod backoff;
pub mod docker;
pub mod link;
pub mod output;
pub mod process;
pub mod state;
pub mod steps;

pub use agent::{
    deregister, run, run_with, AgentConfig, AgentError, DEFAULT_STATE_DIR, RESTARTED_MESSAGE,
    STOPPED_BEFORE_MESSAGE, VERSION,
};
pub use docker::{
    ContainerRuntime, DockerError, DockerRuntime, EngineVersion, RegistryCredentials,
};
pub use output::{OutputChunk, OutputLimits, OutputSink, OutputSummary};
pub use process::{
    prepare_workdir, BashRunner, ProcessError, ProcessRunner, ScriptExit, ScriptOutcome,
    ScriptSpec, WorkdirError,
};

/// Renders an error and its chain of sources as one line ("outer: inner: innermost"),
/// for step reports and logs. Error types in this crate keep their source out of their
/// own message, so this is how to show the whole story.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent holds its runtime and runner as trait objects, so fakes can stand in.
    #[test]
    fn seams_are_object_safe() {
        fn assert_object_safe(_: Option<&dyn ProcessRunner>, _: Option<&dyn ContainerRuntime>) {}
        assert_object_safe(None, None);
    }

    #[test]
    fn error_chain_joins_sources() {
        let err = WorkdirError::Create {
            path: "/x/y".into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        };
        assert_eq!(
            error_chain(&err),
            "cannot create working directory /x/y: denied"
        );
    }
}
