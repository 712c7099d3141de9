//! Running one step of an assignment on this host: `prepare`, `pull`, `stop`, `start`,
//! `verify`, and `exec` (a group exec's script). Reporting is not done here (see the agent loop); a step only writes its
//! output to an [`OutputSink`] and returns how it ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wharf_api::{VerifyWork, WorkAssignment};

use crate::docker::{ContainerRuntime, RegistryCredentials};
use crate::output::OutputSink;
use crate::process::{prepare_workdir, ProcessRunner, ScriptExit, ScriptSpec};

/// Extra time allowed beyond the pull timeout for the runtime to notice it and answer
/// (the runtime enforces the timeout itself; this only guards against one that does not).
const PULL_GUARD: Duration = Duration::from_secs(30);
/// Time between verify attempts.
pub const VERIFY_RETRY: Duration = Duration::from_secs(1);
/// The longest one verify request may take.
const VERIFY_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a verify answer's body is read to look for the expected text.
const VERIFY_MAX_BODY: usize = 1024 * 1024;

/// How a step ended: what its `End` report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    pub succeeded: bool,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub image_digest: Option<String>,
}

impl StepResult {
    fn ok() -> Self {
        Self {
            succeeded: true,
            exit_code: None,
            message: None,
            image_digest: None,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            succeeded: false,
            exit_code: None,
            message: Some(message.into()),
            image_digest: None,
        }
    }
}

/// Runs steps with a container runtime, a script runner and an HTTP client (for verify).
#[derive(Clone)]
pub struct Executor {
    runtime: Arc<dyn ContainerRuntime>,
    runner: Arc<dyn ProcessRunner>,
    http: reqwest::Client,
}

impl Executor {
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        runner: Arc<dyn ProcessRunner>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            runtime,
            runner,
            http,
        }
    }

    /// Runs `step` of `assignment`, writing its output to `output` (which it does not
    /// close). `image_digest` is the digest the pull step of this task returned.
    pub async fn run_step(
        &self,
        assignment: &WorkAssignment,
        step: &str,
        image_digest: Option<&str>,
        output: &OutputSink,
    ) -> StepResult {
        match step {
            "prepare" => prepare(&assignment.workdir).await,
            "pull" => self.pull(assignment, output).await,
            "stop" | "start" | "exec" => self.script(assignment, step, image_digest, output).await,
            "verify" => match &assignment.verify {
                Some(verify) => {
                    let timeout = secs(assignment.timeouts.verify_secs);
                    verify_http(&self.http, verify, timeout, output).await
                }
                None => StepResult::failed("the assignment has no verify check"),
            },
            other => StepResult::failed(format!(
                "this agent (version {}) does not know step {other:?}; upgrade the agent",
                crate::VERSION
            )),
        }
    }

    async fn pull(&self, assignment: &WorkAssignment, output: &OutputSink) -> StepResult {
        let Some(image) = &assignment.image else {
            return StepResult::failed("the assignment has no image to pull");
        };
        // The password lives only in memory: in the assignment, in these credentials and
        // in the request to the engine.
        let credentials = match (&image.username, &image.password) {
            (Some(username), Some(password)) => Some(RegistryCredentials {
                server_address: image.registry.clone(),
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        if image.insecure {
            output.push_line(
                format!(
                    "registry {} is marked insecure (plain HTTP); the Docker Engine pulls from it only if its insecure-registries setting lists it",
                    image.registry
                )
                .as_bytes(),
            );
        }
        let timeout = secs(assignment.timeouts.pull_secs);
        let pull = self
            .runtime
            .pull(&image.address, credentials.as_ref(), timeout, output);
        match tokio::time::timeout(timeout + PULL_GUARD, pull).await {
            Ok(Ok(digest)) => {
                output.push_line(format!("pulled {} ({digest})", image.address).as_bytes());
                StepResult {
                    image_digest: Some(digest),
                    ..StepResult::ok()
                }
            }
            Ok(Err(err @ crate::docker::DockerError::EngineUnreachable { .. })) => {
                // Say how to fix it, for this very group.
                StepResult::failed(format!(
                    "{} (e.g. `wharf group exec {} {} --script scripts/prepare-host.sh`)",
                    crate::error_chain(&err),
                    assignment.app,
                    assignment.group
                ))
            }
            Ok(Err(err)) => StepResult::failed(crate::error_chain(&err)),
            Err(_elapsed) => StepResult::failed(format!(
                "pulling {} did not finish within {} s",
                image.address,
                timeout.as_secs()
            )),
        }
    }

    async fn script(
        &self,
        assignment: &WorkAssignment,
        step: &str,
        image_digest: Option<&str>,
        output: &OutputSink,
    ) -> StepResult {
        // A group exec carries its script as the start script.
        let script = if step == "stop" {
            &assignment.stop_script
        } else {
            &assignment.start_script
        };
        if script.trim().is_empty() {
            return StepResult {
                message: Some(format!("the {step} script is empty; nothing to run")),
                ..StepResult::ok()
            };
        }
        let timeout = secs(assignment.timeouts.script_secs);
        let spec = ScriptSpec {
            script: script.clone(),
            workdir: PathBuf::from(&assignment.workdir),
            env: script_env(assignment, step, image_digest),
            timeout,
            user: if step == "exec" {
                assignment.as_user.clone()
            } else {
                None
            },
        };
        let outcome = match self.runner.run(&spec, output).await {
            Ok(outcome) => outcome,
            Err(err) => return StepResult::failed(crate::error_chain(&err)),
        };
        let exit_code = match outcome.exit {
            ScriptExit::Code(code) => Some(code),
            ScriptExit::Signal(_) => None,
        };
        let abandoned = outcome.output_abandoned.then_some(
            "a process that left the script's process group kept its output open; output after that point is lost",
        );
        let message = if outcome.timed_out {
            Some(format!(
                "timed out after {} s; the process group was killed",
                timeout.as_secs()
            ))
        } else {
            match outcome.exit {
                ScriptExit::Signal(signal) => Some(format!("killed by signal {signal}")),
                // A failure's exit code says it all; the server words the message.
                ScriptExit::Code(_) => abandoned.map(str::to_owned),
            }
        };
        StepResult {
            succeeded: outcome.success(),
            exit_code,
            message,
            image_digest: None,
        }
    }
}

/// The environment of a stop or start script.
pub fn script_env(
    assignment: &WorkAssignment,
    step: &str,
    image_digest: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("WHARF_APP".to_owned(), assignment.app.clone());
    env.insert("WHARF_GROUP".to_owned(), assignment.group.clone());
    env.insert("WHARF_DEPLOYMENT".to_owned(), assignment.deployment.clone());
    env.insert("WHARF_RELEASE".to_owned(), assignment.release_id.clone());
    env.insert("WHARF_INSTANCE".to_owned(), assignment.instance_id.clone());
    env.insert("WHARF_STEP".to_owned(), step.to_owned());
    if let Some(image) = &assignment.image {
        env.insert("WHARF_IMAGE".to_owned(), image.address.clone());
        if let Some(digest) = image_digest {
            env.insert("WHARF_IMAGE_DIGEST".to_owned(), digest.to_owned());
        }
    }
    env
}

async fn prepare(workdir: &str) -> StepResult {
    match prepare_workdir(Path::new(workdir)).await {
        Ok(()) => StepResult::ok(),
        Err(err) => StepResult::failed(crate::error_chain(&err)),
    }
}

/// The verify step: GET `verify.url` until it answers `expect_status` (with
/// `expect_body` in its body, if set) or `timeout` passes. Each distinct answer is
/// written to the output once.
pub async fn verify_http(
    http: &reqwest::Client,
    verify: &VerifyWork,
    timeout: Duration,
    output: &OutputSink,
) -> StepResult {
    let url = match reqwest::Url::parse(&verify.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            return StepResult::failed(format!(
                "verify URL {}: the scheme must be http or https, not {}",
                verify.url,
                url.scheme()
            ))
        }
        Err(err) => return StepResult::failed(format!("verify URL {}: {err}", verify.url)),
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_answer = String::new();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt_timeout = remaining.clamp(Duration::from_millis(100), VERIFY_ATTEMPT_TIMEOUT);
        let (passed, answer) = verify_once(http, url.clone(), verify, attempt_timeout).await;
        if answer != last_answer {
            output.push_line(format!("GET {}: {answer}", verify.url).as_bytes());
            last_answer = answer;
        }
        if passed {
            return StepResult::ok();
        }
        if Instant::now() + VERIFY_RETRY >= deadline {
            return StepResult::failed(format!(
                "{} did not answer as expected within {} s ({attempts} attempts); last answer: {last_answer}",
                verify.url,
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(VERIFY_RETRY).await;
    }
}

/// One verify attempt: whether it passed, and its answer in words.
async fn verify_once(
    http: &reqwest::Client,
    url: reqwest::Url,
    verify: &VerifyWork,
    timeout: Duration,
) -> (bool, String) {
    let mut response = match http.get(url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => {
            return (
                false,
                format!("no answer within {} s", timeout.as_secs_f32()),
            )
        }
        Err(err) => return (false, crate::error_chain(&err.without_url())),
    };
    let status = response.status();
    if status.as_u16() != verify.expect_status {
        return (
            false,
            format!("status {status}, expected {}", verify.expect_status),
        );
    }
    let Some(expected) = &verify.expect_body else {
        return (true, format!("status {status}"));
    };
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = VERIFY_MAX_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= VERIFY_MAX_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(err) => {
                return (
                    false,
                    format!(
                        "status {status}, but reading the body failed: {}",
                        crate::error_chain(&err.without_url())
                    ),
                )
            }
        }
    }
    if String::from_utf8_lossy(&body).contains(expected.as_str()) {
        (true, format!("status {status}, body contains {expected:?}"))
    } else {
        (
            false,
            format!("status {status}, but the body does not contain {expected:?}"),
        )
    }
}

fn secs(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::{PullSpec, Timeouts};

    fn assignment() -> WorkAssignment {
        WorkAssignment {
            release_id: "r-1".into(),
            instance_id: "i-1".into(),
            app: "shop".into(),
            group: "prod".into(),
            deployment: "v1".into(),
            kind: "docker-image".into(),
            image: Some(PullSpec {
                address: "reg.example:5000/team/shop:1".into(),
                registry: "reg.example:5000".into(),
                insecure: false,
                username: Some("u".into()),
                password: Some("p".into()),
            }),
            workdir: "/srv/shop".into(),
            start_script: "true".into(),
            stop_script: String::new(),
            verify: None,
            timeouts: Timeouts {
                pull_secs: 300,
                script_secs: 600,
                verify_secs: 60,
            },
            steps: vec![
                "prepare".into(),
                "pull".into(),
                "stop".into(),
                "start".into(),
            ],
            as_user: None,
        }
    }

    #[test]
    fn scripts_get_the_wharf_variables() {
        let env = script_env(&assignment(), "start", Some("sha256:abc"));
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("WHARF_APP"), Some("shop"));
        assert_eq!(get("WHARF_GROUP"), Some("prod"));
        assert_eq!(get("WHARF_DEPLOYMENT"), Some("v1"));
        assert_eq!(get("WHARF_RELEASE"), Some("r-1"));
        assert_eq!(get("WHARF_INSTANCE"), Some("i-1"));
        assert_eq!(get("WHARF_STEP"), Some("start"));
        assert_eq!(get("WHARF_IMAGE"), Some("reg.example:5000/team/shop:1"));
        assert_eq!(get("WHARF_IMAGE_DIGEST"), Some("sha256:abc"));
        // The registry password is never passed to scripts.
        assert!(env.values().all(|v| v != "p"));

        let mut command = assignment();
        command.image = None;
        let env = script_env(&command, "stop", None);
        assert!(!env.contains_key("WHARF_IMAGE") && !env.contains_key("WHARF_IMAGE_DIGEST"));
    }

    #[tokio::test]
    async fn verify_reports_a_bad_url_at_once() {
        let verify = VerifyWork {
            url: "ftp://example.com/".into(),
            expect_status: 200,
            expect_body: None,
        };
        let out = OutputSink::default();
        let result = verify_http(
            &reqwest::Client::new(),
            &verify,
            Duration::from_secs(5),
            &out,
        )
        .await;
        assert!(!result.succeeded);
        assert!(
            result
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("scheme"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn verify_gives_up_after_its_timeout_with_the_last_error() {
        let verify = VerifyWork {
            url: "http://127.0.0.1:1/health".into(),
            expect_status: 200,
            expect_body: None,
        };
        let out = OutputSink::default();
        let started = std::time::Instant::now();
        let result = verify_http(
            &reqwest::Client::new(),
            &verify,
            Duration::from_secs(2),
            &out,
        )
        .await;
        assert!(!result.succeeded);
        assert!(started.elapsed() < Duration::from_secs(5));
        let message = result.message.unwrap_or_default();
        assert!(
            message.contains("within 2 s") && message.contains("last answer"),
            "{message}"
        );
        assert!(out.summary().tail.contains("GET http://127.0.0.1:1/health"));
    }
}
