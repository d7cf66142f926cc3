//! The OpenAPI document's frame, and the problem-details responses operations declare.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi};

use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "updraft REST API",
        description = "Airflow 3's public REST API v2, as updraft implements it. Errors are \
                       RFC 9457 problem details. Fields only updraft has (tenant, the DAG \
                       version hash) are extra fields.",
        version = "2"
    ),
    components(schemas(ApiError, super::dags::TagsMatchMode)),
    tags(
        (name = "DAG"),
        (name = "DagRun"),
        (name = "DagVersion"),
        (name = "Task", description = "The tasks of a DAG's latest version, with their task \
                                        group"),
        (name = "Task Instance"),
        (name = "Import Error"),
        (name = "DagSource"),
        (name = "Pool"),
        (name = "Connection", description = "Connections per tenant; passwords are write-only \
                                              (`***` when set), sensitive extra fields `***`"),
        (name = "Variable", description = "Variables per tenant; values of sensitive keys `***`"),
        (name = "XCom", description = "What task instances pushed (their current try's); \
                                        values of sensitive keys `***`"),
        (name = "Event Log"),
        (name = "Source", description = "updraft's DAG sources (Airflow's DAG bundles): git \
                                          repositories and object-store prefixes, their last \
                                          sync, revision and error; a sync on request"),
        (name = "Monitor"),
        (name = "Version"),
    )
)]
pub struct ApiDoc;

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
        .into()
}

macro_rules! problem_response {
    ($name:ident, $status:literal, $description:literal) => {
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([($status.to_string(), problem($description))])
            }
        }
    };
}

problem_response!(E400, "400", "Bad request");
problem_response!(
    E401,
    "401",
    "Not authenticated, or a webhook's signature or token does not match"
);
problem_response!(E403, "403", "Forbidden");
problem_response!(E404, "404", "Not found");
problem_response!(E406, "406", "Not acceptable");
problem_response!(E409, "409", "Conflict");
problem_response!(
    E422,
    "422",
    "The request does not fit the operation's schema"
);
