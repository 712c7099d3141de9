//! The console's pages of container registries.

use super::*;

pub struct RegistryRow {
    pub name: String,
    pub endpoint: String,
    pub private_endpoint: Option<String>,
    pub username: Option<String>,
    pub has_password: bool,
    pub insecure: bool,
    pub created: When,
}

impl RegistryRow {
    pub(super) fn new(r: wharf_api::Registry, now: DateTime<Utc>) -> Self {
        Self {
            created: When::new(r.created_at, now),
            name: r.name,
            endpoint: r.endpoint,
            private_endpoint: r.private_endpoint,
            username: r.username,
            has_password: r.has_password,
            insecure: r.insecure,
        }
    }
}

#[derive(Template)]
#[template(path = "console/registries.html")]
struct RegistriesPage {
    chrome: Chrome,
    registries: Vec<RegistryRow>,
}

pub async fn registries(operator: Operator, State(state): State<AppState>) -> PageResult {
    let now = Utc::now();
    let registries = ops::registries::list(&state, &operator.caller)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| RegistryRow::new(r, now))
        .collect();
    let page = RegistriesPage {
        chrome: Chrome::new(&operator, "registries"),
        registries,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/registry.html")]
struct RegistryPage {
    chrome: Chrome,
    r: RegistryRow,
    /// Application, deployment and registry address of each deployment using it.
    used_by: Vec<(String, String, String)>,
}

pub async fn registry(
    operator: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    let caller = &operator.caller;
    let registry = ops::registries::show(&state, caller, &name)
        .await
        .map_err(fail)?;
    let mut used_by = Vec::new();
    for app in ops::apps::list(&state, caller).await.map_err(fail)? {
        for d in ops::deployments::list(&state, caller, &app.name)
            .await
            .map_err(fail)?
        {
            if d.image.as_ref().is_some_and(|i| i.registry == name) {
                used_by.push((
                    app.name.clone(),
                    d.name,
                    d.registry_address.unwrap_or_default(),
                ));
            }
        }
    }
    let page = RegistryPage {
        chrome: Chrome::new(&operator, "registries"),
        r: RegistryRow::new(registry, Utc::now()),
        used_by,
    };
    Ok(html(StatusCode::OK, &page))
}
