//! The checks a deployment's scripts go through before it is stored: bash's own
//! syntax check (an error refuses the deployment), the rules of
//! `wharf_domain::script_check`, and `shellcheck`'s warnings when it is installed
//! on the server. Rules and shellcheck give warnings, answered with the new
//! deployment; with `strict` they refuse it.

use super::{OpError, OpResult};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use wharf_domain::deployment::DeploymentKind;
use wharf_domain::script_check::{check_scripts, Script};

/// How long one checker may take on one script.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks both scripts; the warnings, or the refusal.
pub async fn check(
    kind: DeploymentKind,
    start: &str,
    stop: &str,
    strict: bool,
) -> OpResult<Vec<String>> {
    for (script, text) in [(Script::Start, start), (Script::Stop, stop)] {
        if let Some(error) = syntax_error(text).await {
            return Err(OpError::invalid(
                script.field(),
                format!("{}: bash finds a syntax error: {error}", script.field()),
            ));
        }
    }
    let mut warnings: Vec<(Script, String)> = check_scripts(kind, start, stop)
        .into_iter()
        .map(|finding| (finding.script, finding.to_string()))
        .collect();
    for (script, text) in [(Script::Start, start), (Script::Stop, stop)] {
        for finding in shellcheck(text).await {
            warnings.push((script, format!("{}{finding}", script.field())));
        }
    }
    if strict {
        if let Some((script, _)) = warnings.first() {
            let all: Vec<&str> = warnings.iter().map(|(_, w)| w.as_str()).collect();
            return Err(OpError::invalid(
                script.field(),
                format!("refused (strict): {}", all.join("; ")),
            ));
        }
    }
    Ok(warnings.into_iter().map(|(_, warning)| warning).collect())
}

/// Runs `program args` with `input` on stdin; its exit status and output, or
/// `None` if it is not installed or did not finish in time.
async fn run(program: &str, args: &[&str], input: &str) -> Option<(bool, String)> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_owned();
    // Written beside the wait, so that a large script cannot fill the pipe while
    // nobody reads the output.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let output = tokio::time::timeout(CHECK_TIMEOUT, child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    let _ = writer.await;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

/// bash's complaint about the script's syntax, if it has one. A server without
/// bash (the container image) skips the check.
async fn syntax_error(script: &str) -> Option<String> {
    let (ok, output) = run("bash", &["-n"], script).await?;
    if ok {
        return None;
    }
    // "bash: line 3: syntax error near unexpected token `fi'" and the like.
    let lines: Vec<&str> = output
        .lines()
        .map(|line| line.trim_start_matches("bash: "))
        .filter(|line| !line.trim().is_empty())
        .take(3)
        .collect();
    Some(lines.join("; "))
}

/// shellcheck's warnings and errors (not its style notes) as ` line N: message
/// (SCnnnn)`; none when shellcheck is not installed.
async fn shellcheck(script: &str) -> Vec<String> {
    let Some((_, output)) = run(
        "shellcheck",
        &["-s", "bash", "-S", "warning", "-f", "gcc", "-"],
        script,
    )
    .await
    else {
        return Vec::new();
    };
    // gcc format: "-:LINE:COL: warning: MESSAGE [SCnnnn]"
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("-:")?;
            let (number, rest) = rest.split_once(':')?;
            let (_column, rest) = rest.split_once(':')?;
            let rest = rest.trim();
            let message = rest
                .strip_prefix("warning: ")
                .or_else(|| rest.strip_prefix("error: "))?;
            let (text, code) = match message.rsplit_once(" [") {
                Some((text, code)) => (text, code.trim_end_matches(']')),
                None => (message, "shellcheck"),
            };
            Some(format!(" line {number}: {text} ({code})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_syntax_error_refuses_the_script_naming_it() {
        let refused = check(
            DeploymentKind::Command,
            "if true; then\necho x\n",
            "true",
            false,
        )
        .await
        .unwrap_err();
        match refused {
            OpError::Invalid { field, message } => {
                assert_eq!(field, "start_script");
                assert!(message.contains("syntax error"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn rule_findings_are_warnings_and_strict_refuses_them() {
        let start = "docker pull x\ndocker run -d x";
        let stop = "docker rm -f web || true";
        let warnings = check(DeploymentKind::DockerImage, start, stop, false)
            .await
            .unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("start_script line 1:") && w.contains("start-pulls")),
            "{warnings:?}"
        );
        let refused = check(DeploymentKind::DockerImage, start, stop, true)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, OpError::Invalid { ref field, .. } if field == "start_script"),
            "{refused:?}"
        );
        let clean = check(DeploymentKind::DockerImage, "docker run -d x", stop, true)
            .await
            .unwrap();
        assert_eq!(clean, Vec::<String>::new());
    }

    #[tokio::test]
    async fn shellcheck_warnings_are_reported_when_it_is_installed() {
        // An unquoted variable in a test with -n always succeeds (SC2070).
        // scripts/setup.sh installs shellcheck.
        let warnings = shellcheck("if [ -n $FOO ]; then echo y; fi\n").await;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("SC2070") && w.starts_with(" line 1:")),
            "shellcheck (run scripts/setup.sh) gave {warnings:?}"
        );
        assert_eq!(shellcheck("echo \"$HOME\"\n").await, Vec::<String>::new());
    }
}
