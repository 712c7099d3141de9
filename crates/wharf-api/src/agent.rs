//! The agent protocol (`/agent/v1/`): registration and heartbeats. An agent
//! authenticates with its own credential, returned once at registration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The version of the agent protocol. The server refuses agents that speak a
/// version it does not know, with a message saying which versions it speaks.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

/// Header that carries the agent's protocol version on every request.
pub const PROTOCOL_HEADER: &str = "x-wharf-agent-protocol";

/// `POST /agent/v1/register`, authenticated by the registration token in the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRegister {
    pub registration_token: String,
    /// The instance name; the hostname when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub scaling_group: Option<String>,
}

/// The answer to a registration: the agent keeps `credential` in its state dir and
/// presents it as a bearer token from then on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRegistered {
    pub instance_id: String,
    pub name: String,
    pub credential: String,
    pub heartbeat_interval_secs: u64,
}

/// `POST /agent/v1/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentHeartbeat {
    pub agent_version: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentHeartbeatAck {
    pub instance_id: String,
    pub heartbeat_interval_secs: u64,
}
