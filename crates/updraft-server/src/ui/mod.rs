//! The web UI: server-rendered HTML (minijinja templates compiled into the binary), a little
//! hand-written JavaScript, and live updates over Server-Sent Events.
//!
//! Pages read through the store with bounded, batched queries; actions (pause, trigger, clear,
//! mark, delete) are made by the page's script through the REST API, so the UI has no write
//! path of its own. Each live page has a *live part* that the script re-fetches
//! (`?partial=1`) when `/ui/events` reports a change of a DAG the page shows.
//!
//! | path | view |
//! |---|---|
//! | `/`, `/dags` | DAG list |
//! | `/dags/{dag_id}`, `/dags/{dag_id}/grid` | grid: runs × tasks |
//! | `/dags/{dag_id}/graph?run_id=` | graph of a run |
//! | `/dags/{dag_id}/gantt?run_id=` | Gantt chart of a run |
//! | `/dags/{dag_id}/code?version=` | the DAG file, per version |
//! | `/dags/{dag_id}/runs` | run list |
//! | `/dags/{dag_id}/trigger` | trigger form from the DAG's params |
//! | `/dags/{dag_id}/runs/{run_id}` | a run |
//! | `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}` | a task instance: tries, log |
//! | `/pools`, `/import-errors` | pools, import errors |
//! | `/connections`, `/connections/new`, `/connections/{id}/edit?team_name=` | connections |
//! | `/variables`, `/variables/new`, `/variables/{key}/edit?team_name=` | variables |
//! | `/sources` | DAG sources: revision, last sync, error, sync button |
//! | `/assets`, `/assets/{asset_id}` | assets: producing tasks, scheduled DAGs, events |
//! | `/ui/events` | Server-Sent Events |

mod admin;
mod asset_pages;
mod assets;
mod common;
mod dag;
mod dags;
mod events;
pub mod format;
mod groups;
pub mod layout;
pub(crate) mod render;
mod run;
mod secrets;
pub mod sources;

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub use dag::{Graph, graph};
pub use events::COALESCE;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dags::list))
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dag::grid))
        .route("/dags/{dag_id}/grid", get(dag::grid))
        .route("/dags/{dag_id}/graph", get(dag::graph_view))
        .route("/dags/{dag_id}/gantt", get(dag::gantt))
        .route("/dags/{dag_id}/code", get(dag::code))
        .route("/dags/{dag_id}/runs", get(dag::runs))
        .route("/dags/{dag_id}/trigger", get(dag::trigger_form))
        .route("/dags/{dag_id}/runs/{run_id}", get(run::run_page))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(run::task_page),
        )
        .route("/pools", get(admin::pools))
        .route("/import-errors", get(admin::import_errors))
        .route("/connections", get(secrets::connections_list))
        .route("/connections/new", get(secrets::connection_new))
        .route("/connections/{conn_id}/edit", get(secrets::connection_edit))
        .route("/variables", get(secrets::variables_list))
        .route("/variables/new", get(secrets::variable_new))
        .route("/variables/{key}/edit", get(secrets::variable_edit))
        .route("/sources", get(sources::sources_page))
        .route("/assets", get(asset_pages::assets_page))
        .route("/assets/{asset_id}", get(asset_pages::asset_page))
        .route("/ui/events", get(events::events))
        .route("/ui/static/{file}", get(assets::serve))
}
