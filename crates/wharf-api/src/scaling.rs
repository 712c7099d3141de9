//! Request and response bodies of `/api/v1/scaling-groups`: scaling groups, their
//! lease on the bound application group, held instances, activities and hook runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingGroupCreate {
    pub name: String,
    pub app: String,
    pub group: String,
    /// Run by the server (`bash -c`) when a release suspends the scaling group.
    #[serde(default)]
    pub on_suspend: Option<String>,
    /// Run by the server when the release ends; retried when it fails.
    #[serde(default)]
    pub on_resume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingGroup {
    pub name: String,
    pub app: String,
    pub group: String,
    pub on_suspend: Option<String>,
    pub on_resume: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `active` or `suspended`.
    pub state: String,
    /// `active`, `suspended by r-...`, or `active (on-resume failing: ...)`.
    pub status: String,
    /// The release holding the lease while suspended.
    pub suspended_by: Option<String>,
    pub suspended_at: Option<DateTime<Utc>>,
    /// Failed attempts of the current on-resume command.
    pub resume_attempts: u32,
    /// Whether the on-resume command still has to run (or be retried).
    pub resume_hook_pending: bool,
    pub last_error: Option<String>,
    /// Instances that registered while suspended and wait to join.
    pub pending: Vec<ScalingPending>,
    /// The most recent activities, oldest first.
    pub activities: Vec<ScalingActivity>,
    /// The most recent hook runs, oldest first.
    pub hook_runs: Vec<HookRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingPending {
    pub instance_id: String,
    pub instance_name: String,
    pub held_at: DateTime<Utc>,
    /// `held` (waiting for the resume) or `catching-up` (joined, its catch-up
    /// release not created yet).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingActivity {
    pub instance_id: String,
    pub instance_name: String,
    /// `join`, `held` or `leave`.
    pub kind: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookRun {
    /// `suspend` or `resume`.
    pub hook: String,
    pub release_id: Option<String>,
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    /// The last bytes of stdout and stderr.
    pub output: String,
    pub error: Option<String>,
}
