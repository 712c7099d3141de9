//! Deployments: the immutable description of one revision of an application, and
//! every rule a deployment must pass before it is stored (product.md section 2).

use crate::names::validate_name;
use crate::ValidationError;

/// What a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentKind {
    /// Pull an image from a registry, then run the scripts.
    DockerImage,
    /// Only run the scripts.
    Command,
}

impl DeploymentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerImage => "docker-image",
            Self::Command => "command",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "docker-image" => Ok(Self::DockerImage),
            "command" => Ok(Self::Command),
            other => Err(ValidationError::new(
                "type",
                format!("{other:?} is not a deployment type (docker-image or command)"),
            )),
        }
    }
}

/// The image a `docker-image` deployment pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The name of a registry resource.
    pub registry: String,
    pub namespace: String,
    pub repository: String,
    pub tag: String,
    /// Pull through the registry's private endpoint.
    pub private_network: bool,
}

/// An HTTP check run from the host after the start script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySpec {
    pub url: String,
    pub expect_status: u16,
    pub expect_body: Option<String>,
}

/// Per-step timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub pull_secs: u32,
    pub script_secs: u32,
    pub verify_secs: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pull_secs: 300,
            script_secs: 600,
            verify_secs: 60,
        }
    }
}

impl Timeouts {
    /// How long the server waits for an instance to finish all its steps before it
    /// counts the instance as failed: every step's timeout, plus a margin for the
    /// agent's kill grace period and its reports.
    pub fn task_budget_secs(&self, pulls_image: bool, verifies: bool) -> u32 {
        const MARGIN_SECS: u32 = 60;
        let pull = if pulls_image { self.pull_secs } else { 0 };
        let verify = if verifies { self.verify_secs } else { 0 };
        pull + 2 * self.script_secs + verify + MARGIN_SECS
    }
}

/// The longest step timeout accepted: one day.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// The largest start or stop script accepted.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// The longest working directory accepted.
pub const MAX_WORKDIR_LEN: usize = 4096;

/// A deployment as submitted, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub name: String,
    pub kind: DeploymentKind,
    pub image: Option<ImageSpec>,
    pub workdir: String,
    pub start_script: String,
    pub stop_script: String,
    pub verify: Option<VerifySpec>,
    pub timeouts: Timeouts,
}

impl DeploymentSpec {
    /// Checks every field that can be checked without looking anything up. That the
    /// registry exists, and has a private endpoint when `private_network` is set, is
    /// checked by the caller against the store.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        match (self.kind, &self.image) {
            (DeploymentKind::DockerImage, None) => {
                return Err(ValidationError::new(
                    "image",
                    "a docker-image deployment needs registry, namespace, repository and tag",
                ))
            }
            (DeploymentKind::Command, Some(_)) => {
                return Err(ValidationError::new(
                    "image",
                    "a command deployment has no image fields",
                ))
            }
            (DeploymentKind::DockerImage, Some(image)) => {
                validate_name("registry", &image.registry)?;
                validate_namespace(&image.namespace)?;
                validate_path_component("repository", &image.repository)?;
                validate_tag(&image.tag)?;
            }
            (DeploymentKind::Command, None) => {}
        }
        validate_workdir(&self.workdir)?;
        validate_script("start_script", &self.start_script, false)?;
        validate_script("stop_script", &self.stop_script, true)?;
        if let Some(verify) = &self.verify {
            validate_verify(verify)?;
        }
        validate_timeout("timeouts.pull", self.timeouts.pull_secs)?;
        validate_timeout("timeouts.script", self.timeouts.script_secs)?;
        validate_timeout("timeouts.verify", self.timeouts.verify_secs)?;
        Ok(())
    }
}

/// The address an image is pulled from: `ENDPOINT/NAMESPACE/REPOSITORY:TAG`.
pub fn registry_address(endpoint: &str, namespace: &str, repository: &str, tag: &str) -> String {
    format!("{endpoint}/{namespace}/{repository}:{tag}")
}

/// One OCI path component: `[a-z0-9]+([._-][a-z0-9]+)*`.
pub fn validate_path_component(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > 128 {
        return Err(ValidationError::new(
            field,
            "must be at most 128 characters",
        ));
    }
    let bytes = value.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let separator = |b: u8| matches!(b, b'.' | b'_' | b'-');
    // A separator must sit between two alphanumerics, except that "__" is allowed
    // by the distribution grammar; we keep the stricter single-separator form.
    let ok = alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || separator(b))
        && bytes
            .windows(2)
            .all(|w| !(separator(w[0]) && separator(w[1])));
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("{value:?} must match [a-z0-9]+([._-][a-z0-9]+)*"),
        ));
    }
    Ok(())
}

/// A namespace is one or more path components separated by '/'.
pub fn validate_namespace(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new("namespace", "must not be empty"));
    }
    if value.len() > 255 {
        return Err(ValidationError::new(
            "namespace",
            "must be at most 255 characters",
        ));
    }
    value
        .split('/')
        .try_for_each(|component| validate_path_component("namespace", component))
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new("tag", "must not be empty"));
    }
    if value.len() > 128 {
        return Err(ValidationError::new(
            "tag",
            "must be at most 128 characters",
        ));
    }
    let bytes = value.as_bytes();
    let ok = (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(ValidationError::new(
            "tag",
            format!("{value:?} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"),
        ));
    }
    Ok(())
}

/// A working directory: absolute, no `..` component, no NUL or other control
/// character.
pub fn validate_workdir(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new("workdir", "must not be empty"));
    }
    if value.len() > MAX_WORKDIR_LEN {
        return Err(ValidationError::new(
            "workdir",
            format!("must be at most {MAX_WORKDIR_LEN} characters"),
        ));
    }
    if !value.starts_with('/') {
        return Err(ValidationError::new(
            "workdir",
            format!("{value:?} must be an absolute path"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            "workdir",
            "must not contain NUL or other control characters",
        ));
    }
    if value.split('/').any(|component| component == "..") {
        return Err(ValidationError::new(
            "workdir",
            format!("{value:?} must not contain '..' components"),
        ));
    }
    Ok(())
}

/// A start or stop script: at most 64 KiB of text without NUL bytes. Only the stop
/// script may be empty.
pub fn validate_script(
    field: &str,
    value: &str,
    may_be_empty: bool,
) -> Result<(), ValidationError> {
    if !may_be_empty && value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_SCRIPT_BYTES {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} bytes; the limit is {MAX_SCRIPT_BYTES} bytes (64 KiB)",
                value.len()
            ),
        ));
    }
    if value.contains('\0') {
        return Err(ValidationError::new(field, "must not contain NUL bytes"));
    }
    Ok(())
}

fn validate_verify(verify: &VerifySpec) -> Result<(), ValidationError> {
    let url = &verify.url;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            ValidationError::new(
                "verify.url",
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ValidationError::new(
            "verify.url",
            format!("{url:?} has no host"),
        ));
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "verify.url",
            "must be at most 2048 characters without spaces or control characters",
        ));
    }
    if !(100..=599).contains(&verify.expect_status) {
        return Err(ValidationError::new(
            "verify.expect_status",
            "must be an HTTP status from 100 to 599",
        ));
    }
    if let Some(body) = &verify.expect_body {
        if body.is_empty() || body.len() > 4096 {
            return Err(ValidationError::new(
                "verify.expect_body",
                "must be 1 to 4096 bytes",
            ));
        }
    }
    Ok(())
}

fn validate_timeout(field: &str, secs: u32) -> Result<(), ValidationError> {
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(ValidationError::new(
            field,
            format!("must be from 1 second to {MAX_TIMEOUT_SECS} seconds (one day)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_spec() -> DeploymentSpec {
        DeploymentSpec {
            name: "v1".into(),
            kind: DeploymentKind::DockerImage,
            image: Some(ImageSpec {
                registry: "main".into(),
                namespace: "shop".into(),
                repository: "web".into(),
                tag: "1.0.0".into(),
                private_network: false,
            }),
            workdir: "/srv/web".into(),
            start_script: "docker run -d web".into(),
            stop_script: String::new(),
            verify: None,
            timeouts: Timeouts::default(),
        }
    }

    fn field_of(spec: DeploymentSpec) -> String {
        spec.validate().unwrap_err().field
    }

    #[test]
    fn a_good_spec_passes() {
        image_spec().validate().unwrap();
        let mut command = image_spec();
        command.kind = DeploymentKind::Command;
        command.image = None;
        command.validate().unwrap();
    }

    #[test]
    fn every_field_is_checked() {
        let with = |f: &dyn Fn(&mut DeploymentSpec)| {
            let mut s = image_spec();
            f(&mut s);
            field_of(s)
        };
        let image = |f: &dyn Fn(&mut ImageSpec)| with(&|s| f(s.image.as_mut().unwrap()));
        assert_eq!(with(&|s| s.name = "Bad".into()), "name");
        assert_eq!(with(&|s| s.image = None), "image");
        assert_eq!(with(&|s| s.kind = DeploymentKind::Command), "image");
        assert_eq!(image(&|i| i.registry = "".into()), "registry");
        assert_eq!(image(&|i| i.namespace = "Shop".into()), "namespace");
        assert_eq!(image(&|i| i.namespace = "a//b".into()), "namespace");
        assert_eq!(image(&|i| i.repository = "web-".into()), "repository");
        assert_eq!(image(&|i| i.repository = "we..b".into()), "repository");
        assert_eq!(image(&|i| i.tag = ".1".into()), "tag");
        assert_eq!(image(&|i| i.tag = "a".repeat(129)), "tag");
        assert_eq!(image(&|i| i.tag = "a:b".into()), "tag");
        assert_eq!(with(&|s| s.workdir = "srv/web".into()), "workdir");
        assert_eq!(with(&|s| s.workdir = "/srv/../etc".into()), "workdir");
        assert_eq!(with(&|s| s.workdir = "/srv/\0".into()), "workdir");
        assert_eq!(with(&|s| s.workdir = "".into()), "workdir");
        assert_eq!(with(&|s| s.start_script = " \n".into()), "start_script");
        assert_eq!(
            with(&|s| s.start_script = "x".repeat(64 * 1024 + 1)),
            "start_script"
        );
        assert_eq!(with(&|s| s.stop_script = "a\0b".into()), "stop_script");
        assert_eq!(with(&|s| s.timeouts.script_secs = 0), "timeouts.script");
        assert_eq!(with(&|s| s.timeouts.pull_secs = 86_401), "timeouts.pull");
        let verify = |url: &str, status: u16| {
            with(&|s| {
                s.verify = Some(VerifySpec {
                    url: url.into(),
                    expect_status: status,
                    expect_body: None,
                })
            })
        };
        assert_eq!(verify("ftp://x", 200), "verify.url");
        assert_eq!(verify("http://", 200), "verify.url");
        assert_eq!(verify("http://a b", 200), "verify.url");
        assert_eq!(
            verify("http://localhost:8080/hello", 99),
            "verify.expect_status"
        );
    }

    #[test]
    fn namespaces_may_nest() {
        validate_namespace("team/sub").unwrap();
        validate_path_component("repository", "a.b_c-d").unwrap();
        validate_tag("_latest").unwrap();
        validate_tag("V1.2-rc_3").unwrap();
    }

    #[test]
    fn the_script_limit_is_inclusive() {
        validate_script("start_script", &"x".repeat(64 * 1024), false).unwrap();
    }

    #[test]
    fn registry_address_is_endpoint_namespace_repository_tag() {
        assert_eq!(
            registry_address("reg:5000", "shop", "web", "v1"),
            "reg:5000/shop/web:v1"
        );
    }
}
