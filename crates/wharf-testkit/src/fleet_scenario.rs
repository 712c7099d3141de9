//! The resources of the seed scenario on a [`Fleet`]: the sample image's versions pushed
//! to the fleet's registry, then the registry, app, group (every host) and docker-image
//! deployments created through the `wharf` CLI. Used by the fault tests and by the
//! `fleet-demo` binary (which prints each command it runs).

use std::path::Path;

use anyhow::Context as _;

use crate::docker::{unique_name, ImageGuard};
use crate::fleet::Fleet;
use crate::sample_image;

pub const APP: &str = "shop";
pub const GROUP: &str = "prod";
pub const REGISTRY: &str = "fleet-registry";
pub const NAMESPACE: &str = "fleet";
pub const REPOSITORY: &str = "hello";
/// The container every start script runs.
pub const CONTAINER: &str = "my-container";
/// The file each start script appends `$WHARF_RELEASE` to, in its host, when it begins.
pub const STARTS_FILE: &str = "/var/tmp/starts";
/// The file each start script appends `$WHARF_RELEASE` to, in its host, when it ends.
pub const STARTED_FILE: &str = "/var/tmp/started";

/// The file [`recording_stop_script`] appends `$WHARF_RELEASE` to, in its host.
pub const STOPS_FILE: &str = "/var/tmp/stops";

/// Removes `my-container` if it exists; exits 0 when there is none.
pub const STOP_SCRIPT: &str = "\
if docker container inspect my-container >/dev/null 2>&1; then
  docker rm -f my-container
else
  echo 'nothing to stop: my-container does not exist'
fi
";

/// [`STOP_SCRIPT`] that first appends `$WHARF_RELEASE` to [`STOPS_FILE`]: a record of
/// every run of the stop step on the host.
pub fn recording_stop_script() -> String {
    format!("echo \"$WHARF_RELEASE\" >> {STOPS_FILE}\n{STOP_SCRIPT}")
}

/// A start script running `image` as `my-container` on port 8080. It appends
/// `$WHARF_RELEASE` to [`STARTS_FILE`] first, sleeps `sleep_before` seconds (so a fault
/// can land mid-step), runs the container, and appends `$WHARF_RELEASE` to
/// [`STARTED_FILE`] last.
pub fn start_script(image: &str, sleep_before: u32) -> String {
    let mut text = format!("echo \"$WHARF_RELEASE\" >> {STARTS_FILE}\n");
    if sleep_before > 0 {
        text.push_str(&format!("sleep {sleep_before}\n"));
    }
    text.push_str(&format!(
        "docker run -d -p 8080:8080 --name {CONTAINER} {image}\n\
         echo \"$WHARF_RELEASE\" >> {STARTED_FILE}\n"
    ));
    text
}

/// Runs the scenario's CLI commands against one fleet.
pub struct Scenario<'a> {
    fleet: &'a Fleet,
    /// Print each command (`$ wharf …`) and its output, like a walkthrough.
    verbose: bool,
    scripts: tempfile::TempDir,
    images: ImageGuard,
}

impl<'a> Scenario<'a> {
    pub fn new(fleet: &'a Fleet, verbose: bool) -> anyhow::Result<Self> {
        Ok(Self {
            fleet,
            verbose,
            scripts: tempfile::Builder::new()
                .prefix("wharf-fleet-scripts-")
                .tempdir_in(fleet.run_dir())
                .context("creating a scripts directory")?,
            images: ImageGuard::new(),
        })
    }

    /// Builds the sample image for each version and pushes it to the fleet's registry as
    /// `fleet/hello:VERSION` (the local tags are removed when the scenario is dropped).
    pub async fn push_versions(&mut self, versions: &[&str]) -> anyhow::Result<()> {
        let (user, password) = self.fleet.registry_credentials();
        for version in versions {
            let local = self
                .images
                .add(format!("{}:{version}", unique_name("wharf-fleet-sample")));
            sample_image::build(version, &local)
                .await
                .with_context(|| format!("building the sample image {version}"))?;
            sample_image::push(
                &local,
                self.fleet.registry(),
                NAMESPACE,
                REPOSITORY,
                version,
                (user, password),
            )
            .await
            .with_context(|| format!("pushing the sample image {version}"))?;
            if self.verbose {
                println!(
                    "pushed {}/{NAMESPACE}/{REPOSITORY}:{version} (user {user})",
                    self.fleet.registry_local()
                );
            }
        }
        Ok(())
    }

    /// The address the hosts pull `version` from.
    pub fn image(&self, version: &str) -> String {
        format!(
            "{}/{NAMESPACE}/{REPOSITORY}:{version}",
            self.fleet.registry_for_hosts()
        )
    }

    /// `wharf ARGS` (stdin given to the command if any), failing unless it exits 0;
    /// returns its trimmed stdout.
    pub async fn wharf(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
        if self.verbose {
            let shown: Vec<String> = args.iter().map(|arg| shell_word(arg)).collect();
            let input = if stdin.is_some() {
                "   # password on stdin"
            } else {
                ""
            };
            println!("$ wharf {}{input}", shown.join(" "));
        }
        let output = self.fleet.wharf_with_stdin(args, stdin).await?;
        anyhow::ensure!(
            output.success(),
            "wharf {} failed ({:?}): {}{}",
            args.join(" "),
            output.code,
            output.stdout,
            output.stderr
        );
        if self.verbose {
            let text = output.stdout.trim_end();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(output.stdout.trim().to_owned())
    }

    /// The registry (password on stdin), the app, and the group of every host.
    pub async fn create_basics(&self) -> anyhow::Result<()> {
        let (user, password) = self.fleet.registry_credentials();
        let endpoint = self.fleet.registry_for_hosts();
        self.wharf(
            &[
                "registry",
                "create",
                REGISTRY,
                "--endpoint",
                &endpoint,
                "--username",
                user,
                "--password-stdin",
                "--insecure",
            ],
            Some(password.as_bytes()),
        )
        .await?;
        self.wharf(&["app", "create", APP], None).await?;
        self.wharf(&["group", "create", APP, GROUP], None).await?;
        let mut add = vec!["group", "add-instances", APP, GROUP];
        add.extend(self.fleet.hosts().iter().map(|host| host.name.as_str()));
        self.wharf(&add, None).await?;
        Ok(())
    }

    /// A docker-image deployment `name` of `fleet/hello:version` with [`STOP_SCRIPT`] and
    /// `start` as scripts, working directory `/srv/shop`; `extra` is appended (e.g.
    /// `--step-timeout 60s`).
    pub async fn create_deployment(
        &self,
        name: &str,
        version: &str,
        start: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        self.create_deployment_with_stop(name, version, start, STOP_SCRIPT, extra)
            .await
    }

    /// [`create_deployment`](Self::create_deployment) with `stop` as the stop script.
    pub async fn create_deployment_with_stop(
        &self,
        name: &str,
        version: &str,
        start: &str,
        stop: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let stop_path = write_script(self.scripts.path(), &format!("stop-{name}.sh"), stop)?;
        let start_path = write_script(self.scripts.path(), &format!("start-{name}.sh"), start)?;
        if self.verbose {
            println!("# {start_path}:\n{}", indent(start));
            println!("# {stop_path}:\n{}", indent(stop));
        }
        let mut args = vec![
            "deployment",
            "create",
            APP,
            name,
            "--type",
            "docker-image",
            "--registry",
            REGISTRY,
            "--namespace",
            NAMESPACE,
            "--repository",
            REPOSITORY,
            "--tag",
            version,
            "--workdir",
            "/srv/shop",
            "--start-script",
            &start_path,
            "--stop-script",
            &stop_path,
        ];
        args.extend_from_slice(extra);
        self.wharf(&args, None).await?;
        Ok(())
    }
}

fn write_script(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("#   {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `word` quoted for a POSIX shell when it needs it.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_script_records_the_release_and_sleeps() {
        let text = start_script("10.0.0.1:5000/fleet/hello:v1", 3);
        assert!(text.starts_with("echo \"$WHARF_RELEASE\" >> /var/tmp/starts\nsleep 3\n"));
        assert!(text.contains("--name my-container 10.0.0.1:5000/fleet/hello:v1"));
        assert!(!start_script("x", 0).contains("sleep"));
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("--batches"), "--batches");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
