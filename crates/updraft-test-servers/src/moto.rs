//! An S3-compatible server: PyPI's `moto[server]`, installed into a virtualenv in the cache
//! folder on first use and started once per test binary.

use std::sync::OnceLock;

use crate::emulator::{self, ObjectServer, StoreKind};

/// The moto release the tests were written against.
const MOTO: &str = "moto[server]==5.2.5";

const ACCESS_KEY: &str = "updraft-test";

/// The `Authorization` header of what the tests upload themselves: the access key
/// object_store is given, in a SigV4 header whose signature moto does not check.
const CALLER: &str = "AWS4-HMAC-SHA256 Credential=updraft-test/20260101/us-east-1/s3/aws4_request, \
     SignedHeaders=host, Signature=0";

/// The S3 server of this test binary, started on first use.
pub fn moto() -> &'static ObjectServer {
    static SERVER: OnceLock<ObjectServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> ObjectServer {
    let venv = emulator::installed("moto-5.2.5", |dir| {
        crate::emulator::python_venv(dir, &[MOTO])
    });
    let port = emulator::free_port();
    let log = emulator::log_path("moto");
    let running = emulator::start(
        &venv.join("bin/moto_server"),
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        log,
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "updraft-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    ObjectServer {
        kind: StoreKind::S3,
        endpoint,
        env,
        running,
        create: create_bucket,
        upload: upload_object,
    }
}

/// A path-style `PUT /<bucket>` (see [`upload_object`] for the header).
fn create_bucket(server: &ObjectServer, name: &str) -> Result<(), String> {
    let headers = [("Authorization", CALLER.to_string())];
    let (status, body) =
        emulator::request(server.port(), "PUT", &format!("/{name}"), &headers, b"")
            .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {body}")),
    }
}

/// A path-style `PUT /<bucket>/<key>` with an `Authorization` header: moto checks no
/// signature (its IAM authorization is off) but refuses an overwrite to a request without
/// that header, as it would to an anonymous caller.
fn upload_object(
    server: &ObjectServer,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> Result<(), String> {
    let path = format!("/{bucket}/{}", emulator::encode_key(key));
    let headers = [("Authorization", CALLER.to_string())];
    let (status, answer) = emulator::request(server.port(), "PUT", &path, &headers, body)
        .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {answer}")),
    }
}
