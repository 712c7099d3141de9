//! The service layer's operations with callers of other roles and scopes, over a
//! real SQLite store. Every token is an admin token today, so the API cannot
//! show these refusals yet; they show that each operation checks its caller.

use super::*;
use crate::secrets::SecretBox;
use crate::state::AppState;
use std::sync::Arc;
use wharf_api::{AppCreate, GroupCreate, RegistryCreate};
use wharf_store::SqliteStore;

async fn state(dir: &tempfile::TempDir) -> AppState {
    let store = SqliteStore::open(&dir.path().join("wharf.db"))
        .await
        .expect("a store");
    AppState::new(Arc::new(store), SecretBox::random())
}

fn app(name: &str) -> AppCreate {
    AppCreate {
        name: name.into(),
        description: None,
    }
}

fn scoped(role: Role, apps: &[&str]) -> Caller {
    Caller {
        apps: Some(apps.iter().map(|a| (*a).to_owned()).collect()),
        ..Caller::api_token("tok_scoped".into(), role, None)
    }
}

#[tokio::test]
async fn operations_refuse_a_role_too_weak_and_apps_out_of_scope() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = state(&dir).await;
    let admin = Caller::api_token("tok_admin".into(), Role::Admin, None);
    apps::create(&state, &admin, app("shop"))
        .await
        .expect("shop");
    apps::create(&state, &admin, app("blog"))
        .await
        .expect("blog");

    // A viewer of shop sees shop only, and changes nothing.
    let viewer = scoped(Role::Viewer, &["shop"]);
    let seen: Vec<String> = apps::list(&state, &viewer)
        .await
        .expect("a list")
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(seen, ["shop"]);
    assert!(apps::show(&state, &viewer, "shop").await.is_ok());
    assert!(matches!(
        apps::show(&state, &viewer, "blog").await,
        Err(OpError::Forbidden {
            needs: Role::Viewer
        })
    ));
    let refused = groups::create(
        &state,
        &viewer,
        "shop".into(),
        GroupCreate { name: "web".into() },
    )
    .await;
    assert!(matches!(
        refused,
        Err(OpError::Forbidden {
            needs: Role::Operator
        })
    ));
    assert!(groups::list(&state, &viewer, "shop")
        .await
        .expect("no groups")
        .is_empty());

    // An operator of shop manages shop's groups, not blog's, and no registry.
    let operator = scoped(Role::Operator, &["shop"]);
    groups::create(
        &state,
        &operator,
        "shop".into(),
        GroupCreate { name: "web".into() },
    )
    .await
    .expect("a group of shop");
    assert!(matches!(
        groups::create(
            &state,
            &operator,
            "blog".into(),
            GroupCreate { name: "web".into() }
        )
        .await,
        Err(OpError::Forbidden { .. })
    ));
    let registry = RegistryCreate {
        name: "hub".into(),
        endpoint: "registry.example.com".into(),
        private_endpoint: None,
        username: None,
        password: None,
        insecure: false,
    };
    assert!(matches!(
        registries::create(&state, &operator, registry).await,
        Err(OpError::Forbidden { needs: Role::Admin })
    ));

    // The server itself and the admin are refused nothing.
    assert!(apps::delete(&state, &Caller::server(), "blog")
        .await
        .is_ok());
    assert!(matches!(
        apps::show(&state, &admin, "blog").await,
        Err(OpError::NotFound { .. })
    ));
}

#[tokio::test]
async fn only_an_agent_takes_work_and_only_a_registering_agent_registers() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = state(&dir).await;
    let admin = Caller::api_token("tok_admin".into(), Role::Admin, None);
    assert!(matches!(
        work::poll(&state, &admin, Some(0)).await,
        Err(OpError::Forbidden { .. })
    ));
    let agent = Caller::agent("i-0000000000000000".into(), None);
    assert!(matches!(
        work::poll(&state, &agent, Some(0)).await,
        Ok(None)
    ));
    assert!(caller::Caller::registering(None)
        .require_registration()
        .is_ok());
    assert!(admin.require_registration().is_err());
}
