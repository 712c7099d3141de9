//! Checks of a deployment's scripts before it is stored, by the rules the seed's
//! procedure gives them: the agent pulls the image before the stop step, so a
//! start script must not pull; the stop script runs on every release, also on a
//! host where nothing runs yet, so it must succeed then; and it must stop what
//! the previous version started.
//!
//! These are textual rules over each line (comments dropped), with no shell
//! parser: they look for the commands named, and count a line as guarded when it
//! ends in `|| true`, `|| :` or `|| exit 0`. A syntax check (`bash -n`) and
//! `shellcheck` need programs and run in the server.

use crate::deployment::DeploymentKind;

/// Which script a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Start,
    Stop,
}

impl Script {
    /// The field of a deployment that holds it.
    pub fn field(self) -> &'static str {
        match self {
            Script::Start => "start_script",
            Script::Stop => "stop_script",
        }
    }
}

/// One thing a script does that the rules advise against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub script: Script,
    /// 1-based, when the finding is about one line.
    pub line: Option<usize>,
    /// A stable name of the rule, e.g. `start-pulls`.
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{} line {line}: {} ({})",
                self.script.field(),
                self.message,
                self.rule
            ),
            None => write!(
                f,
                "{}: {} ({})",
                self.script.field(),
                self.message,
                self.rule
            ),
        }
    }
}

/// The findings for a deployment's scripts, in script and line order.
pub fn check_scripts(kind: DeploymentKind, start: &str, stop: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (number, line) in lines(start) {
        if pulls(&line) {
            findings.push(Finding {
                script: Script::Start,
                line: Some(number),
                rule: "start-pulls",
                message: "the start script pulls an image: the agent pulls (and records) the \
                          deployment's image before the stop step, so this pulls again, with \
                          credentials the host must hold, and may get another image than the \
                          release's"
                    .to_owned(),
            });
        }
    }
    if stop.trim().is_empty() {
        if kind == DeploymentKind::DockerImage {
            findings.push(Finding {
                script: Script::Stop,
                line: None,
                rule: "stop-empty",
                message: "the stop script is empty: it runs before every start and must stop \
                          the current and earlier versions, else the old container keeps \
                          running (and its port taken)"
                    .to_owned(),
            });
        }
        return findings;
    }
    let exits_on_error = lines(stop).any(|(_, line)| sets_errexit(&line));
    if exits_on_error {
        // Inside `if ... fi` a line runs only when its condition held (the sample's
        // stop script asks whether the container exists first).
        let mut depth = 0usize;
        for (number, line) in lines(stop) {
            let opens = line.starts_with("if ");
            let closes = line == "fi" || line.ends_with("; fi") || line.ends_with(";fi");
            let inside = depth > 0 || opens;
            if opens {
                depth += 1;
            }
            if closes {
                depth = depth.saturating_sub(1);
            }
            if stops_a_container(&line) && !inside && !guarded(&line) {
                findings.push(Finding {
                    script: Script::Stop,
                    line: Some(number),
                    rule: "stop-fails-when-nothing-runs",
                    message: "under `set -e` this fails, and with it the release, on a host \
                              where the container does not exist yet (a first release, a new \
                              host): end the line with `|| true`"
                        .to_owned(),
                });
            }
        }
    }
    findings
}

/// The script's lines with their numbers, comments and surrounding blanks gone,
/// empty lines skipped.
fn lines(script: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    script.lines().enumerate().filter_map(|(index, line)| {
        let code = match line.find('#') {
            // A `#` that starts a word starts a comment (not `$#` or `a#b`).
            Some(at) if at == 0 || line[..at].ends_with(char::is_whitespace) => &line[..at],
            _ => line,
        };
        let code = code.trim();
        (!code.is_empty()).then(|| (index + 1, code.to_owned()))
    })
}

/// The words of a line, split at whitespace and at `;`, `&&` and `||`.
fn commands(line: &str) -> Vec<Vec<&str>> {
    line.split([';', '&', '|'])
        .map(|part| part.split_whitespace().collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .collect()
}

fn pulls(line: &str) -> bool {
    commands(line).iter().any(|words| {
        let words: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect();
        matches!(
            words.as_slice(),
            ["docker", "pull", ..]
                | ["docker", "image", "pull", ..]
                | ["sudo", "docker", "pull", ..]
        )
    })
}

fn stops_a_container(line: &str) -> bool {
    commands(line).iter().any(|words| {
        let words: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect();
        matches!(
            words.as_slice(),
            ["docker", "stop" | "rm" | "kill", _, ..]
                | ["docker", "container", "stop" | "rm" | "kill", _, ..]
        )
    })
}

fn sets_errexit(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["set", flags @ ..] => {
            flags
                .iter()
                .any(|flag| flag.starts_with('-') && !flag.starts_with("--") && flag.contains('e'))
                || flags.windows(2).any(|pair| pair == ["-o", "errexit"])
        }
        _ => false,
    }
}

fn guarded(line: &str) -> bool {
    let line = line.trim_end();
    ["|| true", "||true", "|| :", "||:", "|| exit 0"]
        .iter()
        .any(|guard| line.ends_with(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(kind: DeploymentKind, start: &str, stop: &str) -> Vec<(&'static str, Option<usize>)> {
        check_scripts(kind, start, stop)
            .into_iter()
            .map(|f| (f.rule, f.line))
            .collect()
    }

    const CLEAN_START: &str = "docker run -d --name web -p 8080:8080 \"$WHARF_IMAGE\"\n";
    const CLEAN_STOP: &str = "set -euo pipefail\ndocker rm -f web 2>/dev/null || true\n";

    #[test]
    fn clean_scripts_have_no_findings() {
        assert_eq!(
            rules(DeploymentKind::DockerImage, CLEAN_START, CLEAN_STOP),
            []
        );
        // The seed's sample scripts.
        let start = include_str!("../../../sample-app/deploy/start.sh");
        let stop = include_str!("../../../sample-app/deploy/stop.sh");
        assert_eq!(rules(DeploymentKind::DockerImage, start, stop), []);
    }

    #[test]
    fn a_start_script_that_pulls_is_named_with_its_line() {
        let start =
            "# docker pull in a comment is fine\ndocker pull registry/shop:1\ndocker run -d x";
        assert_eq!(
            rules(DeploymentKind::DockerImage, start, CLEAN_STOP),
            [("start-pulls", Some(2))]
        );
        let start = "set -e; sudo docker pull x && docker run x\ndocker image pull --quiet y";
        assert_eq!(
            rules(DeploymentKind::DockerImage, start, CLEAN_STOP),
            [("start-pulls", Some(1)), ("start-pulls", Some(2))]
        );
        assert_eq!(
            rules(DeploymentKind::DockerImage, "echo docker pull", CLEAN_STOP),
            []
        );
    }

    #[test]
    fn a_stop_script_that_fails_when_nothing_runs_is_named() {
        let stop = "#!/bin/bash\nset -e\ndocker stop web\ndocker rm web || true\nif docker rm x; then :; fi\nif true; then\n  docker rm y\nfi\ndocker kill z";
        assert_eq!(
            rules(DeploymentKind::DockerImage, CLEAN_START, stop),
            [
                ("stop-fails-when-nothing-runs", Some(3)),
                ("stop-fails-when-nothing-runs", Some(9))
            ]
        );
        let stop = "set -o errexit\ndocker container rm -f web";
        assert_eq!(
            rules(DeploymentKind::DockerImage, CLEAN_START, stop),
            [("stop-fails-when-nothing-runs", Some(2))]
        );
        // Without set -e a failing line does not fail the script.
        assert_eq!(
            rules(DeploymentKind::DockerImage, CLEAN_START, "docker stop web"),
            []
        );
    }

    #[test]
    fn an_empty_stop_script_is_named_for_images_only() {
        assert_eq!(
            rules(DeploymentKind::DockerImage, CLEAN_START, "  \n"),
            [("stop-empty", None)]
        );
        assert_eq!(rules(DeploymentKind::Command, "true", ""), []);
    }

    #[test]
    fn findings_read_as_one_line_naming_the_field() {
        let finding = &check_scripts(DeploymentKind::DockerImage, "docker pull x", CLEAN_STOP)[0];
        let text = finding.to_string();
        assert!(text.starts_with("start_script line 1: "), "{text}");
        assert!(text.ends_with("(start-pulls)"), "{text}");
    }
}
