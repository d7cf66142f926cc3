//! DAG files: the first stage of updraft's data flow.
//!
//! A DAG is a YAML file under the DAGs folder. This crate turns those files into validated
//! [`Dag`] values (or [`ImportError`]s that point at file, line and column), gives each DAG a
//! content [`Dag::version`], and keeps a whole folder loaded as files come and go.
//! It does no scheduling and no I/O beyond reading the DAGs folder.
//!
//! - [`parse_dag`] parses one file; the format is described in `docs/dag-files.md`.
//! - [`DagBag`] loads a DAGs folder (with tenants) and [`DagBag::refresh`] reloads what changed.
//! - [`watch`] calls back when anything under the folder changes.
//! - [`excerpt`] reads the lines around an import error without leaving the folder.
//! - [`lint::lint_dag_file`] finds DAG warnings: what loads but is likely a mistake.
//! - [`log_path`] says where a try's log lives under the logs folder.
//! - [`resolve_params`] computes a run's params from the DAG's specs and the run's conf.
//! - [`Schedule::description`] reads a schedule as Airflow's `timetable_description` does.
//! - [`Dag::topological_order`], [`Dag::downstream_of`] and [`Dag::upstream_of`] query the graph.

mod assets;
mod bag;
mod describe;
mod diag;
mod excerpt;
mod graph;
mod group;
pub mod lint;
mod logs;
mod mapping;
pub mod model;
mod notifiers;
mod params;
mod parse;
mod pod;
mod python;
mod schedule;
mod sensor;
mod task;
mod trigger;
mod walk;
mod watch;
mod yaml;

pub use assets::{ExpressionError, MAX_ASSET_URI_LEN, check_asset_uri, parse_asset_expression};
pub use bag::{
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_FILE_SIZE, DagBag, DagBagOptions, DagMount,
    LoadedDag, MAX_ERROR_MESSAGE_CHARS, MAX_ERRORS_PER_FILE, RefreshReport, bounded_message,
    foreign_claim_error, tenant_of,
};
pub use describe::{describe_cron, describe_duration};
pub use excerpt::{ExcerptLine, MAX_EXCERPT_FILE, MAX_EXCERPT_LINE_CHARS, excerpt};
pub use graph::topological_order;
pub use logs::{log_path, mapped_log_path};
pub use model::*;
pub use notifiers::DEFAULT_SMTP_CONNECTION;
pub use params::{ParamError, check_value, resolve_params};
pub use parse::{
    DAG_KEYS, DEFAULT_MAX_ACTIVE, MAX_IDENTIFIER_LEN, MAX_TAG_LEN, check_identifier,
    is_valid_identifier, parse_dag,
};
pub use pod::{check_namespace, check_template_path};
pub use python::check_callable;
pub use schedule::{CRON_PRESETS, cron_preset_name, parse_cron, parse_datetime, parse_schedule};
pub use task::DEFAULT_RETRY_DELAY;
pub use walk::{FOLDER_ERROR_FILENAME, escape_name, is_bidi_control};
pub use watch::{DEFAULT_DEBOUNCE, FolderWatcher, WatchError, watch, watch_channel};
