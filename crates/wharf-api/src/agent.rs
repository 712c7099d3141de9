//! The agent protocol (`/agent/v1/`): registration and heartbeats. An agent
//! authenticates with its own credential, returned once at registration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The version of the agent protocol that agents speak. The server refuses
/// agents that speak a version it does not know, with a message saying which
/// versions it speaks. Version 2 added `then_begin` to a step's `End` report,
/// version 3 `offset` to its `Output` reports.
pub const AGENT_PROTOCOL_VERSION: u32 = 3;

/// The oldest version of the agent protocol the server still speaks: agents of
/// an earlier release keep working while the fleet is upgraded after the server.
pub const OLDEST_AGENT_PROTOCOL_VERSION: u32 = 1;

/// Header that carries the agent's protocol version on every request.
pub const PROTOCOL_HEADER: &str = "x-wharf-agent-protocol";

/// `POST /agent/v1/register`, authenticated by the registration token in the body.
/// `Debug` hides the token.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
/// presents it as a bearer token from then on. `Debug` hides the credential.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The host's Docker Engine as the agent found it; absent from older agents.
    #[serde(default)]
    pub docker: Option<DockerStatus>,
}

/// Whether the host's Docker Engine answers: its version if it does, else why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DockerStatus {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentHeartbeatAck {
    pub instance_id: String,
    pub heartbeat_interval_secs: u64,
}

impl std::fmt::Debug for AgentRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRegister")
            .field("registration_token", &"<redacted>")
            .field("name", &self.name)
            .field("hostname", &self.hostname)
            .field("os", &self.os)
            .field("arch", &self.arch)
            .field("agent_version", &self.agent_version)
            .field("labels", &self.labels)
            .field("scaling_group", &self.scaling_group)
            .finish()
    }
}

impl std::fmt::Debug for AgentRegistered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRegistered")
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("credential", &"<redacted>")
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let register = AgentRegister {
            registration_token: "wharf_reg_secret".into(),
            name: None,
            hostname: "h".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            agent_version: "0".into(),
            labels: BTreeMap::new(),
            scaling_group: None,
        };
        assert!(!format!("{register:?}").contains("wharf_reg_secret"));
        let registered = AgentRegistered {
            instance_id: "i-0".into(),
            name: "h".into(),
            credential: "wharf_agt_secret".into(),
            heartbeat_interval_secs: 10,
        };
        assert!(!format!("{registered:?}").contains("wharf_agt_secret"));
    }
}
