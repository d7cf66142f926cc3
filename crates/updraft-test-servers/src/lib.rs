//! Tests only: real servers for the tests of DAG sources and remote logs, each installed when
//! missing and started once per test binary: an S3-compatible server (`moto`), Azure Blob
//! (`azurite`), GCS (`fake-gcs-server`), git over HTTP (`git http-backend` behind a
//! small web server with basic auth) and over SSH (Debian's `sshd` on a local port).

pub mod azurite;
pub mod emulator;
pub mod gcs;
pub mod moto;

pub use azurite::azurite;
pub use emulator::{ObjectServer, StoreKind};
pub use gcs::gcs;
pub use moto::moto;
