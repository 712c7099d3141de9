//! The fleet's host images: Debian bookworm root filesystems built with `debootstrap`
//! and imported into the local engine. Two recipes:
//!
//! - [`FLEET_HOST`] (`wharf-fleet-host:HASH`): with its own Docker Engine (`docker.io`)
//!   and the two scripts from `scripts/fleet/` that start it; every fleet host runs it.
//! - [`BARE_HOST`] (`wharf-fleet-bare-host:HASH`): the same base *without* Docker, a
//!   fresh Debian host for `scripts/prepare-host.sh` to prepare (see
//!   [`crate::bare_host`]).
//! - [`SYSTEMD_HOST`] (`wharf-fleet-systemd-host:HASH`): the bare base with systemd as
//!   its main process, where the `.deb` is installed and its units run
//!   (`tests/packaging.rs`).
//!
//! [`ensure`] (and [`ensure_bare`]) return the image's reference, building it only when
//! the local engine has no image with the expected tag. The tag is a hash of everything
//! that goes into the image (suite, variant, package list, the scripts installed and the
//! image config), so a change to any of them builds a new image and an unchanged recipe
//! reuses the cached one. Builds are serialized across threads and processes by a lock
//! directory per recipe next to the system's temporary files; a lock whose owner died is
//! broken.
//!
//! Environment:
//! - `WHARF_FLEET_HOST_IMAGE`: use this image reference as it is (no build, no check).
//! - `WHARF_FLEET_BARE_HOST_IMAGE`: the same for the bare host image.
//! - `WHARF_FLEET_SYSTEMD_HOST_IMAGE`: the same for the systemd host image.
//! - `WHARF_FLEET_DEBIAN_MIRROR`: the Debian mirror debootstrap downloads from (default
//!   `http://deb.debian.org/debian`); not part of the tag.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use crate::fleet_docker::{docker, docker_output, owner_id, owner_is_gone};

/// The repository of the host image in the local engine.
pub const IMAGE_REPOSITORY: &str = "wharf-fleet-host";

/// The repository of the bare host image (no Docker) in the local engine.
pub const BARE_IMAGE_REPOSITORY: &str = "wharf-fleet-bare-host";

/// The Debian suite of the host's root filesystem.
pub const SUITE: &str = "bookworm";

/// debootstrap's variant: only the essential packages and apt.
pub const VARIANT: &str = "minbase";

/// Packages installed on top of the variant: the engine, a shell for the deployment
/// scripts, and tools for checks from inside a host.
pub const PACKAGES: &[&str] = &["docker.io", "bash", "curl", "iproute2", "ca-certificates"];

/// The bare host's packages: those of [`PACKAGES`] but the engine. What a freshly
/// installed minimal Debian server has (apt, a shell, curl, certificates).
pub const BARE_PACKAGES: &[&str] = &["bash", "curl", "iproute2", "ca-certificates"];

/// The systemd host's packages: systemd as PID 1 (and D-Bus for `systemctl`), curl
/// for checks.
pub const SYSTEMD_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "bash",
    "curl",
    "ca-certificates",
];

/// The repository of the systemd host image in the local engine.
pub const SYSTEMD_IMAGE_REPOSITORY: &str = "wharf-fleet-systemd-host";

/// The mirror used when `WHARF_FLEET_DEBIAN_MIRROR` is not set.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The host's main process (run by tini): starts the engine, then waits.
pub const HOST_INIT_SCRIPT: &str = include_str!("../../../scripts/fleet/host-init.sh");

/// Starts the host's engine in the background; also used to restart it after a test
/// stopped it.
pub const HOST_DOCKERD_SCRIPT: &str = include_str!("../../../scripts/fleet/host-dockerd.sh");

/// Where the two scripts are installed in the image.
pub const HOST_INIT_PATH: &str = "/usr/local/sbin/wharf-host-init";
/// See [`HOST_INIT_PATH`].
pub const HOST_DOCKERD_PATH: &str = "/usr/local/sbin/wharf-host-dockerd";

/// Bump to force a rebuild when something not captured below changes.
const RECIPE_REVISION: u32 = 1;

/// [`RECIPE_REVISION`] of the bare host image.
const BARE_RECIPE_REVISION: u32 = 1;

/// `docker import --change` instructions: the image config.
const IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENTRYPOINT [\"/usr/bin/docker-init\", \"--\", \"/usr/local/sbin/wharf-host-init\"]",
    "LABEL org.opencontainers.image.title=wharf-fleet-host",
];

/// The bare host's image config. Its main process only waits; the container is started
/// with `--init` (the engine's tini as PID 1 reaps what the host's services leave).
const BARE_IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "CMD [\"sleep\", \"infinity\"]",
    "LABEL org.opencontainers.image.title=wharf-fleet-bare-host",
];

/// The systemd host's image config: systemd is the main process (`container` tells
/// it that it runs in one).
const SYSTEMD_IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV container=docker",
    "CMD [\"/lib/systemd/systemd\"]",
    "LABEL org.opencontainers.image.title=wharf-fleet-systemd-host",
];

/// One image recipe: what debootstrap installs, the files added, the image config.
#[derive(Debug)]
pub struct Recipe {
    /// The repository the image is tagged in (`REPOSITORY:HASH`).
    pub repository: &'static str,
    /// Bumped to force a rebuild.
    revision: u32,
    /// debootstrap's `--include`.
    pub packages: &'static [&'static str],
    /// Executable files added to the root filesystem: (name in the hash, path, text).
    files: &'static [(&'static str, &'static str, &'static str)],
    /// `docker import --change` instructions.
    changes: &'static [&'static str],
    /// A file in the image holding the recipe's hash.
    marker: &'static str,
    /// `WHARF_…` variable naming an image to use instead of building.
    override_var: &'static str,
    /// Serializes builds between the tests of one process; holds the last reference found.
    cache: tokio::sync::Mutex<Option<String>>,
}

/// The fleet host: Debian with its own Docker Engine and the scripts that start it.
pub static FLEET_HOST: Recipe = Recipe {
    repository: IMAGE_REPOSITORY,
    revision: RECIPE_REVISION,
    packages: PACKAGES,
    files: &[
        ("init", HOST_INIT_PATH, HOST_INIT_SCRIPT),
        ("dockerd", HOST_DOCKERD_PATH, HOST_DOCKERD_SCRIPT),
    ],
    changes: IMAGE_CHANGES,
    marker: "etc/wharf-fleet-host",
    override_var: "WHARF_FLEET_HOST_IMAGE",
    cache: tokio::sync::Mutex::const_new(None),
};

/// A fresh Debian host without Docker, for the host preparation script.
pub static BARE_HOST: Recipe = Recipe {
    repository: BARE_IMAGE_REPOSITORY,
    revision: BARE_RECIPE_REVISION,
    packages: BARE_PACKAGES,
    files: &[],
    changes: BARE_IMAGE_CHANGES,
    marker: "etc/wharf-fleet-bare-host",
    override_var: "WHARF_FLEET_BARE_HOST_IMAGE",
    cache: tokio::sync::Mutex::const_new(None),
};

/// A Debian host with systemd as PID 1, for the package and its units.
pub static SYSTEMD_HOST: Recipe = Recipe {
    repository: SYSTEMD_IMAGE_REPOSITORY,
    revision: 1,
    packages: SYSTEMD_PACKAGES,
    files: &[],
    changes: SYSTEMD_IMAGE_CHANGES,
    marker: "etc/wharf-fleet-systemd-host",
    override_var: "WHARF_FLEET_SYSTEMD_HOST_IMAGE",
    cache: tokio::sync::Mutex::const_new(None),
};

impl Recipe {
    /// The recipe's hash: what the tag is made of.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut part = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.len().to_le_bytes());
            hasher.update(value.as_bytes());
        };
        part("revision", &self.revision.to_string());
        part("arch", std::env::consts::ARCH);
        part("suite", SUITE);
        part("variant", VARIANT);
        part("packages", &self.packages.join(","));
        for (name, _, text) in self.files {
            part(name, text);
        }
        part("changes", &self.changes.join("\n"));
        hex::encode(&hasher.finalize()[..8])
    }

    /// The reference the recipe builds: `REPOSITORY:HASH`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.hash())
    }

    /// Returns the image's reference, building and importing it first if the local
    /// engine does not have it (about a minute; needs root and `debootstrap`).
    pub async fn ensure(&'static self) -> anyhow::Result<String> {
        if let Ok(reference) = std::env::var(self.override_var) {
            if !reference.is_empty() {
                return Ok(reference);
            }
        }
        let mut cached = self.cache.lock().await;
        let reference = self.reference();
        if cached.as_deref() == Some(reference.as_str()) && exists(&reference).await? {
            return Ok(reference);
        }
        if !exists(&reference).await? {
            let build_reference = reference.clone();
            tokio::task::spawn_blocking(move || self.build_locked(&build_reference))
                .await
                .context("the host image build task panicked")??;
        }
        *cached = Some(reference.clone());
        Ok(reference)
    }

    /// Builds under the cross-process lock, unless another process built it meanwhile.
    fn build_locked(&self, reference: &str) -> anyhow::Result<()> {
        let _lock = BuildLock::acquire(self.repository, &self.hash())?;
        let present = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", reference])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running docker image inspect")?
            .success();
        if present {
            return Ok(());
        }
        self.build(reference)
    }

    /// Builds the root filesystem with debootstrap and imports it as `reference`.
    pub fn build(&self, reference: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        check_prerequisites()?;
        let workdir = tempfile::Builder::new()
            .prefix("wharf-fleet-rootfs-")
            .tempdir()
            .context("creating the root filesystem's build directory")?;
        let rootfs = workdir.path().join("rootfs");
        let log_path = workdir.path().join("debootstrap.log");
        let mirror = std::env::var("WHARF_FLEET_DEBIAN_MIRROR")
            .ok()
            .filter(|mirror| !mirror.is_empty())
            .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
        eprintln!(
            "wharf-testkit: building the image {reference} with debootstrap \
             ({SUITE}, {VARIANT}, from {mirror}); about a minute"
        );
        run_debootstrap(&rootfs, self.packages, &mirror, &log_path)?;
        self.finish_rootfs(&rootfs)?;
        import(&rootfs, self.changes, reference)?;
        remove_older_tags(self.repository, reference);
        eprintln!(
            "wharf-testkit: built {reference} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Trims the package caches and installs the recipe's files.
    fn finish_rootfs(&self, rootfs: &Path) -> anyhow::Result<()> {
        for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            let dir = rootfs.join(dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        for (_, path, text) in self.files {
            let target = rootfs.join(path.trim_start_matches('/'));
            write_executable(&target, text)?;
        }
        std::fs::write(rootfs.join(self.marker), self.hash())
            .with_context(|| format!("writing /{}", self.marker))?;
        Ok(())
    }
}

/// How long debootstrap may take (about a minute with a nearby mirror).
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// How long to wait for another process's build before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(25 * 60);

/// The fleet host recipe's hash: what the tag is made of.
pub fn recipe_hash() -> String {
    FLEET_HOST.hash()
}

/// The reference the current fleet host recipe builds: `wharf-fleet-host:HASH`.
pub fn expected_reference() -> String {
    FLEET_HOST.reference()
}

/// Whether the local engine has an image called `reference`.
pub async fn exists(reference: &str) -> anyhow::Result<bool> {
    let output = docker_output(
        &["image", "inspect", "--format", "{{.Id}}", reference],
        Duration::from_secs(60),
    )
    .await?;
    Ok(output.success())
}

/// Returns the fleet host image's reference, building and importing it first if the
/// local engine does not have it (about a minute; needs root and `debootstrap`).
pub async fn ensure() -> anyhow::Result<String> {
    FLEET_HOST.ensure().await
}

/// Returns the bare host image's reference (no Docker), building it first if needed.
pub async fn ensure_bare() -> anyhow::Result<String> {
    BARE_HOST.ensure().await
}

/// Returns the systemd host image's reference, building it first if needed (about two
/// minutes).
pub async fn ensure_systemd() -> anyhow::Result<String> {
    SYSTEMD_HOST.ensure().await
}

/// Builds the fleet host's root filesystem with debootstrap and imports it as `reference`.
pub fn build(reference: &str) -> anyhow::Result<()> {
    FLEET_HOST.build(reference)
}

fn check_prerequisites() -> anyhow::Result<()> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    anyhow::ensure!(
        String::from_utf8_lossy(&uid.stdout).trim() == "0",
        "building the fleet host image needs root (debootstrap creates device nodes and \
         root-owned files); run the fleet tests as root or set WHARF_FLEET_HOST_IMAGE"
    );
    anyhow::ensure!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "/usr/sbin/debootstrap is missing: install Debian's debootstrap package \
         (scripts/setup.sh does)"
    );
    Ok(())
}

fn run_debootstrap(
    rootfs: &Path,
    packages: &[&str],
    mirror: &str,
    log_path: &Path,
) -> anyhow::Result<()> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating the log handle")?;
    let mut child = Command::new("/usr/sbin/debootstrap")
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", packages.join(",")))
        .arg(SUITE)
        .arg(rootfs)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .context("starting debootstrap")?;
    let deadline = Instant::now() + DEBOOTSTRAP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for debootstrap")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "debootstrap did not finish within {DEBOOTSTRAP_TIMEOUT:?}; the end of its log:\n{}",
                tail(log_path, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !status.success() {
        // debootstrap's own log inside the target says more than its output.
        let inner = rootfs.join("debootstrap/debootstrap.log");
        bail!(
            "debootstrap failed ({status}); the end of its output:\n{}\nthe end of {}:\n{}",
            tail(log_path, 30),
            inner.display(),
            tail(&inner, 30)
        );
    }
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// `tar -C ROOTFS -c . | docker import --change ... - REFERENCE`.
fn import(rootfs: &Path, changes: &[&str], reference: &str) -> anyhow::Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-cf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tar")?;
    let tar_out = tar.stdout.take().context("tar has no stdout pipe")?;
    let mut import = Command::new("docker");
    import.arg("import");
    for change in changes {
        import.arg("--change").arg(change);
    }
    let imported = import
        .args(["-", reference])
        .stdin(Stdio::from(tar_out))
        .output()
        .context("running docker import")?;
    let tar_result = tar.wait_with_output().context("waiting for tar")?;
    anyhow::ensure!(
        tar_result.status.success(),
        "tar of {} failed ({}): {}",
        rootfs.display(),
        tar_result.status,
        String::from_utf8_lossy(&tar_result.stderr).trim()
    );
    anyhow::ensure!(
        imported.status.success(),
        "docker import as {reference} failed ({}): {}",
        imported.status,
        String::from_utf8_lossy(&imported.stderr).trim()
    );
    Ok(())
}

/// Removes tags of earlier recipes. An image still used by a container (another run on
/// an older checkout) stays: `docker rmi` without `--force` refuses it.
fn remove_older_tags(repository: &str, current: &str) {
    let Ok(output) = Command::new("docker")
        .args(["images", repository, "--format", "{{.Repository}}:{{.Tag}}"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for reference in String::from_utf8_lossy(&output.stdout).lines() {
        if reference != current && !reference.ends_with(":<none>") {
            let _ = Command::new("docker")
                .args(["rmi", reference])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The last `lines` lines of a file, or a note that it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("({} cannot be read: {error})", path.display()),
    }
}

/// A directory whose creation is the lock; it holds an `owner` file with the
/// [`owner_id`] of the holder, so a lock left by a dead process is broken.
struct BuildLock {
    dir: PathBuf,
}

impl BuildLock {
    fn acquire(repository: &str, hash: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{repository}-{hash}.lock"));
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut announced = false;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::write(dir.join("owner"), owner_id())
                        .with_context(|| format!("writing the owner of {}", dir.display()))?;
                    return Ok(Self { dir });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("creating {}", dir.display()))
                }
            }
            // The owner file is written right after the directory; give it a moment.
            match std::fs::read_to_string(dir.join("owner")) {
                Ok(owner) if owner_is_gone(&owner) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                Err(_) if lock_age(&dir) > Duration::from_secs(30) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                _ => {}
            }
            if !announced {
                eprintln!(
                    "wharf-testkit: waiting for another process building the image {repository} \
                     (lock {})",
                    dir.display()
                );
                announced = true;
            }
            if Instant::now() >= deadline {
                bail!(
                    "another process held {} for more than {LOCK_TIMEOUT:?}",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn lock_age(dir: &Path) -> Duration {
    std::fs::metadata(dir)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default()
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Checks that the docker CLI answers; used before anything else so that a machine
/// without an engine fails with one clear message.
pub async fn check_engine() -> anyhow::Result<()> {
    docker(&["version", "--format", "{{.Server.Version}}"])
        .await
        .context("the Docker Engine does not answer (is dockerd running?)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_a_stable_hash_of_the_recipe() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 16);
        assert!(expected_reference().starts_with("wharf-fleet-host:"));
    }

    #[test]
    fn the_bare_host_is_the_fleet_host_without_docker() {
        assert_ne!(BARE_HOST.hash(), FLEET_HOST.hash());
        assert!(BARE_HOST.reference().starts_with("wharf-fleet-bare-host:"));
        assert!(!BARE_PACKAGES.contains(&"docker.io"));
        let without_engine: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|package| *package != "docker.io")
            .collect();
        assert_eq!(without_engine, BARE_PACKAGES);
        assert!(BARE_HOST.files.is_empty());
    }

    #[test]
    fn the_scripts_are_part_of_the_image() {
        assert!(HOST_INIT_SCRIPT.contains(HOST_DOCKERD_PATH.rsplit('/').next().unwrap()));
        assert!(IMAGE_CHANGES.iter().any(|c| c.contains(HOST_INIT_PATH)));
    }
}
