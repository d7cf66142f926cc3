//! Tests only: real servers for the tests of DAG sources and remote logs, each installed when
//! missing and started once per test binary: an S3-compatible server (`moto`), Azure Blob
//! (`azurite`), GCS (`fake-gcs-server`), git over HTTP (`git http-backend` behind a
//! small web server with basic auth), over SSH (Debian's `sshd` on a local port), and an SMTP sink
//! (`aiosmtpd`).

pub mod azurite;
pub mod emulator;
pub mod gcs;
pub mod git_http;
pub mod moto;
pub mod smtp;
pub mod sshd;

pub use azurite::azurite;
pub use emulator::{ObjectServer, StoreKind};
pub use gcs::gcs;
pub use git_http::{GitHttp, git_http};
pub use moto::moto;
pub use smtp::{SmtpSink, smtp};
pub use sshd::{Sshd, sshd};
