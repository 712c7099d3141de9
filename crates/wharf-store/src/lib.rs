//! Wharf's persistent state behind one trait, [`Store`], and its backends. Only the
//! server uses this crate. Each backend owns its migrations, so a new backend (such
//! as PostgreSQL) can be added without touching callers; every backend must pass the
//! conformance suite in `tests/conformance.rs`.

pub mod error;
pub mod records;
pub mod sqlite;

pub use error::StoreError;
pub use records::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the control plane keeps. Method names are resource-first
/// (`app_create`, `group_fetch`) so that related operations sort together.
///
/// Every method is atomic: a refused call (an error) changes nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ------------------------------------------------------------ API tokens

    /// Stores the hash of an API token (such as the admin token).
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()>;
    /// Finds an API token by the hash of its secret.
    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    /// How many API tokens exist (zero means the server has never started here).
    async fn api_token_count(&self) -> StoreResult<u64>;

    // ------------------------------------------------------------ registration tokens

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()>;
    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>>;
    /// Revokes a token by id.
    async fn registration_token_delete(&self, id: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ instances

    /// Registers an instance with a registration token, in one transaction: the
    /// token (found by hash) must exist, be unexpired and have a use left; one use is
    /// taken and the instance is inserted. Fails with
    /// [`StoreError::RegistrationRefused`] otherwise, and with `AlreadyExists` if the
    /// name is taken.
    async fn instance_register(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>>;
    /// Finds an instance by id or, failing that, by name.
    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord>;
    /// Finds an instance by the hash of its agent credential.
    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>>;
    /// Records a heartbeat.
    async fn instance_heartbeat(
        &self,
        id: &str,
        at: DateTime<Utc>,
        agent_version: &str,
        address: &str,
    ) -> StoreResult<()>;
    /// Deregisters an instance: it leaves every group and its credential stops
    /// working.
    async fn instance_delete(&self, id: &str) -> StoreResult<()>;
    /// The groups an instance belongs to, with what it runs in each.
    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>>;

    // ------------------------------------------------------------ applications

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()>;
    async fn app_list(&self) -> StoreResult<Vec<AppRecord>>;
    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord>;
    /// Refused with `InUse` while the application has groups or deployments.
    async fn app_delete(&self, name: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ groups

    /// Fails with `NotFound` if the application does not exist.
    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()>;
    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>>;
    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord>;
    /// Refused with `InUse` while the group has instances.
    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()>;
    /// Adds instances (by id) to a group; instances already in it are left as they
    /// are. All ids must exist, or nothing is added.
    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()>;
    /// Removes instances (by id) from a group. All must be members, or nothing is
    /// removed.
    async fn group_remove_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()>;
    /// The members of a group with what each runs, ordered by instance name.
    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>>;

    // ------------------------------------------------------------ registries

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()>;
    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>>;
    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord>;
    /// Refused with `InUse` while a deployment names the registry.
    async fn registry_delete(&self, name: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ deployments

    /// Fails with `NotFound` if the application or the registry does not exist.
    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()>;
    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>>;
    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord>;
    /// Refused with `InUse` while a group of the application has it as its current
    /// or previous deployment.
    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()>;
}
