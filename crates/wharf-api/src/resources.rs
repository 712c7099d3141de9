//! Request and response bodies of `/api/v1/` for instances, applications, groups,
//! registries and deployments.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

// ---------------------------------------------------------------- instances

/// A host running `wharf agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    /// `i-` followed by 16 hex characters.
    pub id: String,
    pub name: String,
    pub hostname: String,
    /// The address the agent connected from, as the server saw it.
    pub address: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    /// `online` while heartbeats arrive, `offline` otherwise.
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub scaling_group: Option<String>,
    /// Registered while its scaling group was suspended: waiting to join the group
    /// when the release ends (filled by `show`).
    #[serde(default)]
    pub scaling_pending: bool,
    /// The groups this instance belongs to and what it runs in each.
    pub groups: Vec<InstanceMembership>,
    /// The version of the host's Docker Engine, when the agent last found it
    /// answering.
    #[serde(default)]
    pub docker_version: Option<String>,
    /// Why the agent last found no working Docker Engine on the host. Both
    /// absent: not reported (by an older agent, or not yet).
    #[serde(default)]
    pub docker_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceMembership {
    pub app: String,
    pub group: String,
    /// The deployment last published to this instance in this group.
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
}

/// Asks for a registration token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationTokenCreate {
    /// Seconds until the token expires (default one day, at most 365 days).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// How many agents may register with it (default 1, at most 100000).
    #[serde(default)]
    pub uses: Option<u32>,
}

/// A registration token. `token` is present only in the answer to its creation:
/// the server keeps only a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistrationToken {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
    pub uses_left: u32,
}

// ---------------------------------------------------------------- applications

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub groups: Vec<String>,
    pub deployments: Vec<String>,
}

// ---------------------------------------------------------------- groups

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub app: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The deployment of the group's last successful release.
    pub current_deployment: Option<String>,
    /// The deployment that was current before that one (what `rollback` publishes).
    pub previous_deployment: Option<String>,
    pub instances: Vec<GroupMember>,
    /// The group's most recent releases, newest first, without their batches
    /// (filled by `show`).
    #[serde(default)]
    pub releases: Vec<crate::Release>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupMember {
    pub id: String,
    pub name: String,
    pub status: String,
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
    /// The member does not run the group's current deployment.
    #[serde(default)]
    pub drift: bool,
}

/// Instances to add to or remove from a group, by id or name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupInstances {
    pub instances: Vec<String>,
}

// ---------------------------------------------------------------- registries

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCreate {
    pub name: String,
    /// `HOST[:PORT]`, reachable from the hosts.
    pub endpoint: String,
    /// `HOST[:PORT]` on the hosts' private network, used by deployments with
    /// `private_network`.
    #[serde(default)]
    pub private_endpoint: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Stored encrypted; never returned.
    #[serde(default)]
    pub password: Option<String>,
    /// Pull over plain HTTP.
    #[serde(default)]
    pub insecure: bool,
}

/// A registry as the API shows it: the password is never returned, only whether
/// one is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Registry {
    pub name: String,
    pub endpoint: String,
    pub private_endpoint: Option<String>,
    pub username: Option<String>,
    pub has_password: bool,
    pub insecure: bool,
    pub created_at: DateTime<Utc>,
}

// ---------------------------------------------------------------- deployments

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageFields {
    /// The name of a registry resource.
    pub registry: String,
    pub namespace: String,
    pub repository: String,
    pub tag: String,
    #[serde(default)]
    pub private_network: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCheck {
    /// Fetched with GET from the host.
    pub url: String,
    /// The status expected (default 200).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// A substring the body must contain.
    #[serde(default)]
    pub expect_body: Option<String>,
}

/// Step timeouts in seconds; a missing field takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsInput {
    #[serde(default)]
    pub pull_secs: Option<u32>,
    #[serde(default)]
    pub script_secs: Option<u32>,
    #[serde(default)]
    pub verify_secs: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timeouts {
    pub pull_secs: u32,
    pub script_secs: u32,
    pub verify_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreate {
    pub name: String,
    /// `docker-image` or `command`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub image: Option<ImageFields>,
    pub workdir: String,
    pub start_script: String,
    #[serde(default)]
    pub stop_script: String,
    #[serde(default)]
    pub verify: Option<VerifyCheck>,
    #[serde(default)]
    pub timeouts: Option<TimeoutsInput>,
    /// Refuse the deployment if a script check warns (not only on a syntax error).
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub app: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub image: Option<ImageFields>,
    /// `ENDPOINT/NAMESPACE/REPOSITORY:TAG`, computed from the registry.
    pub registry_address: Option<String>,
    pub workdir: String,
    pub start_script: String,
    pub stop_script: String,
    pub verify: Option<VerifyCheck>,
    pub timeouts: Timeouts,
    pub created_at: DateTime<Utc>,
    /// What the script checks found when the deployment was created (only in the
    /// answer to its creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------- misc

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}
