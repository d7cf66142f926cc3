//! Tests only: real servers for the tests of DAG sources and remote logs, each installed when
//! missing and started once per test binary: an S3-compatible server (`moto`), Azure Blob
//! (`azurite`), GCS (`gcp-storage-emulator`), git over HTTP (`git http-backend` behind a
//! small web server with basic auth) and over SSH (Debian's `sshd` on a local port).

pub mod git_http;
pub mod sshd;

pub use git_http::{GitHttp, git_http};
pub use sshd::{Sshd, sshd};
