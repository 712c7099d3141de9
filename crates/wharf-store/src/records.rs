//! What the store keeps, one plain struct per table row. Secrets appear here only as
//! hashes (tokens, credentials) or ciphertext (registry passwords): the server hashes
//! and encrypts before it calls the store.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// What the token may do; `admin` is the only role so far.
    pub role: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRecord {
    pub id: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
    pub uses_left: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub address: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    /// Hex SHA-256 of the agent's credential.
    pub credential_hash: String,
    pub scaling_group: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

/// One group an instance belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub app: String,
    pub group: String,
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub instance: InstanceRecord,
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub app: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub current_deployment: Option<String>,
    pub previous_deployment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRecord {
    pub name: String,
    pub endpoint: String,
    pub private_endpoint: Option<String>,
    pub username: Option<String>,
    /// The password encrypted by the server (nonce and ciphertext); never plaintext.
    pub password_sealed: Option<Vec<u8>>,
    pub insecure: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub app: String,
    pub name: String,
    pub kind: DeploymentKind,
    pub image: Option<ImageSpec>,
    pub workdir: String,
    pub start_script: String,
    pub stop_script: String,
    pub verify: Option<VerifySpec>,
    pub timeouts: Timeouts,
    pub created_at: DateTime<Utc>,
}
