//! The OpenAPI document, generated from the handlers' annotations and the wire
//! types, served at `/api/v1/openapi.json`.

use crate::api;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Wharf API", description = "Publish Docker images onto fleets of Linux hosts."),
    paths(
        api::system::healthz,
        api::instances::token_create, api::instances::token_list, api::instances::token_delete,
        api::instances::list, api::instances::show, api::instances::delete,
        api::apps::create, api::apps::list, api::apps::show, api::apps::delete,
        api::groups::create, api::groups::list, api::groups::show, api::groups::delete,
        api::groups::add_instances, api::groups::remove_instances,
        api::registries::create, api::registries::list, api::registries::show, api::registries::delete,
        api::deployments::create, api::deployments::list, api::deployments::show, api::deployments::delete,
        api::releases::create, api::releases::rollback, api::releases::list, api::releases::show,
        api::releases::continue_release, api::releases::cancel, api::releases::logs,
        api::execs::create, api::execs::list, api::execs::show, api::execs::cancel, api::execs::logs,
        api::scaling::create, api::scaling::list, api::scaling::show, api::scaling::delete,
        api::agents::register, api::agents::heartbeat, api::agents::deregister, api::work::poll, api::work::event,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
