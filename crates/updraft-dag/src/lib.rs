//! DAG files: the first stage of updraft's data flow.
//!
//! A DAG is a YAML file under the DAGs folder. This crate turns those files into validated
//! [`Dag`] values (or [`ImportError`]s that point at file, line and column), gives each DAG a
//! content [`Dag::version`], and keeps a whole folder loaded as files come and go.
//! It does no scheduling and no I/O beyond reading the DAGs folder.

pub mod model;

pub use model::*;
