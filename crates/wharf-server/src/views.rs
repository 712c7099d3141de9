//! Conversions from stored records to the API's wire types. Secrets stop here:
//! no view carries a hash, a credential or a sealed password.

use crate::state::OFFLINE_AFTER;
use chrono::{DateTime, Utc};
use wharf_api as api;
use wharf_domain::deployment::registry_address;
use wharf_store::{
    AppRecord, DeploymentRecord, GroupRecord, InstanceRecord, MemberRecord, MembershipRecord,
    RegistrationTokenRecord, RegistryRecord,
};

/// `online` when the last heartbeat is recent enough.
pub fn instance_status(
    last_heartbeat_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> &'static str {
    match last_heartbeat_at {
        Some(at) if now.signed_duration_since(at).to_std().unwrap_or_default() < OFFLINE_AFTER => {
            "online"
        }
        _ => "offline",
    }
}

pub fn instance(
    record: InstanceRecord,
    memberships: Vec<MembershipRecord>,
    now: DateTime<Utc>,
) -> api::Instance {
    api::Instance {
        status: instance_status(record.last_heartbeat_at, now).to_owned(),
        id: record.id,
        name: record.name,
        hostname: record.hostname,
        address: record.address,
        os: record.os,
        arch: record.arch,
        agent_version: record.agent_version,
        labels: record.labels,
        registered_at: record.registered_at,
        last_heartbeat_at: record.last_heartbeat_at,
        scaling_group: record.scaling_group,
        groups: memberships
            .into_iter()
            .map(|m| api::InstanceMembership {
                app: m.app,
                group: m.group,
                deployment: m.deployment,
                image_digest: m.image_digest,
            })
            .collect(),
    }
}

pub fn registration_token(
    record: RegistrationTokenRecord,
    token: Option<String>,
) -> api::RegistrationToken {
    api::RegistrationToken {
        id: record.id,
        token,
        created_at: record.created_at,
        expires_at: record.expires_at,
        uses: record.uses,
        uses_left: record.uses_left,
    }
}

pub fn app(record: AppRecord, groups: Vec<String>, deployments: Vec<String>) -> api::App {
    api::App {
        name: record.name,
        description: record.description,
        created_at: record.created_at,
        groups,
        deployments,
    }
}

pub fn group(record: GroupRecord, members: Vec<MemberRecord>, now: DateTime<Utc>) -> api::Group {
    api::Group {
        app: record.app,
        name: record.name,
        created_at: record.created_at,
        current_deployment: record.current_deployment,
        previous_deployment: record.previous_deployment,
        instances: members
            .into_iter()
            .map(|m| api::GroupMember {
                status: instance_status(m.instance.last_heartbeat_at, now).to_owned(),
                id: m.instance.id,
                name: m.instance.name,
                deployment: m.deployment,
                image_digest: m.image_digest,
            })
            .collect(),
    }
}

pub fn registry(record: RegistryRecord) -> api::Registry {
    api::Registry {
        name: record.name,
        endpoint: record.endpoint,
        private_endpoint: record.private_endpoint,
        username: record.username,
        has_password: record.password_sealed.is_some(),
        insecure: record.insecure,
        created_at: record.created_at,
    }
}

/// A deployment with its computed registry address; `registry` is the record the
/// deployment's image names (absent for `command` deployments).
pub fn deployment(record: DeploymentRecord, registry: Option<&RegistryRecord>) -> api::Deployment {
    let address = match (&record.image, registry) {
        (Some(image), Some(registry)) => {
            let endpoint = if image.private_network {
                registry
                    .private_endpoint
                    .as_deref()
                    .unwrap_or(&registry.endpoint)
            } else {
                &registry.endpoint
            };
            Some(registry_address(
                endpoint,
                &image.namespace,
                &image.repository,
                &image.tag,
            ))
        }
        _ => None,
    };
    api::Deployment {
        app: record.app,
        name: record.name,
        kind: record.kind.as_str().to_owned(),
        image: record.image.map(|i| api::ImageFields {
            registry: i.registry,
            namespace: i.namespace,
            repository: i.repository,
            tag: i.tag,
            private_network: i.private_network,
        }),
        registry_address: address,
        workdir: record.workdir,
        start_script: record.start_script,
        stop_script: record.stop_script,
        verify: record.verify.map(|v| api::VerifyCheck {
            url: v.url,
            expect_status: Some(v.expect_status),
            expect_body: v.expect_body,
        }),
        timeouts: api::Timeouts {
            pull_secs: record.timeouts.pull_secs,
            script_secs: record.timeouts.script_secs,
            verify_secs: record.timeouts.verify_secs,
        },
        created_at: record.created_at,
    }
}
