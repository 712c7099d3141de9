//! The console's pages of instances and registration tokens.

use super::*;

pub struct MembershipRow {
    pub app: String,
    pub group: String,
    pub deployment: Option<String>,
    pub digest: String,
    pub digest_short: String,
}

pub struct InstanceRow {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub address: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub scaling_group: Option<String>,
    /// The Docker Engine's version, when the agent last found it answering.
    pub docker_version: Option<String>,
    /// Why the agent last found no working Docker Engine.
    pub docker_error: Option<String>,
    pub registered: When,
    pub last_heartbeat: Option<When>,
    pub groups: Vec<MembershipRow>,
}

impl InstanceRow {
    pub(super) fn new(i: wharf_api::Instance, now: DateTime<Utc>) -> Self {
        Self {
            registered: When::new(i.registered_at, now),
            last_heartbeat: When::opt(i.last_heartbeat_at, now),
            groups: i
                .groups
                .into_iter()
                .map(|g| {
                    let digest = g.image_digest.unwrap_or_default();
                    MembershipRow {
                        app: g.app,
                        group: g.group,
                        deployment: g.deployment,
                        digest_short: fmt::short_digest(&digest),
                        digest,
                    }
                })
                .collect(),
            id: i.id,
            name: i.name,
            hostname: i.hostname,
            status: i.status,
            labels: i.labels,
            address: i.address,
            os: i.os,
            arch: i.arch,
            agent_version: i.agent_version,
            scaling_group: i.scaling_group,
            docker_version: i.docker_version,
            docker_error: i.docker_error,
        }
    }
}

pub struct NewToken {
    pub id: String,
    pub token: String,
    pub expires: String,
    pub uses: u32,
    pub command: String,
}

#[derive(Template)]
#[template(path = "console/instances.html")]
struct InstancesPage {
    chrome: Chrome,
    instances: Vec<InstanceRow>,
    form: FormState,
    new_token: Option<NewToken>,
}

pub async fn instances(operator: Operator, State(state): State<AppState>) -> PageResult {
    instances_page(
        &state,
        &operator,
        StatusCode::OK,
        FormState::with(&[("ttl_secs", "3600"), ("uses", "1")]),
        None,
    )
    .await
}

pub async fn instances_page(
    state: &AppState,
    operator: &Operator,
    status: StatusCode,
    form: FormState,
    new_token: Option<NewToken>,
) -> PageResult {
    let now = Utc::now();
    let instances = ops::instances::list(state, &operator.caller)
        .await
        .map_err(fail)?;
    let page = InstancesPage {
        chrome: Chrome::new(operator, "instances"),
        instances: instances
            .into_iter()
            .map(|i| InstanceRow::new(i, now))
            .collect(),
        form,
        new_token,
    };
    Ok(html(status, &page))
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage {
    chrome: Chrome,
    i: InstanceRow,
}

pub async fn instance(
    operator: Operator,
    State(state): State<AppState>,
    Path(instance): Path<String>,
) -> PageResult {
    let view = ops::instances::show(&state, &operator.caller, &instance)
        .await
        .map_err(fail)?;
    let page = InstancePage {
        chrome: Chrome::new(&operator, "instances"),
        i: InstanceRow::new(view, Utc::now()),
    };
    Ok(html(StatusCode::OK, &page))
}
