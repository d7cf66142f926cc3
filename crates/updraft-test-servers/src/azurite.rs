//! Azure Blob Storage: npm's `azurite` (blob service only, in memory), installed with
//! `npm install --prefix` into the cache folder on first use and started once per test
//! binary. Containers are created with a Shared Key request, as Azure's SDKs sign them.

use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::emulator::{self, ObjectServer, StoreKind};

/// The azurite release the tests were written against.
const AZURITE: &str = "azurite@3.35.0";

/// Azurite's built-in account and its published key (the same in every installation).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The x-ms-version sent when creating containers.
const API_VERSION: &str = "2021-08-06";

/// The Azure Blob server of this test binary, started on first use.
pub fn azurite() -> &'static ObjectServer {
    static SERVER: OnceLock<ObjectServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> ObjectServer {
    let prefix = emulator::installed("azurite-3.35.0", |dir| {
        emulator::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(dir)
                .arg(AZURITE),
        )
    });
    let port = emulator::free_port();
    let args: Vec<String> = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    .map(String::from)
    .to_vec();
    let running = emulator::start(
        &prefix.join("node_modules/.bin/azurite-blob"),
        &args,
        port,
        emulator::log_path("azurite"),
    );
    // The account's endpoint given explicitly (not `AZURE_STORAGE_USE_EMULATOR`, whose
    // address object_store reads from the process environment alone), so that an
    // in-process client reaches it too.
    let endpoint = format!("http://127.0.0.1:{port}/{ACCOUNT}");
    let env = [
        ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY),
        ("AZURE_STORAGE_ENDPOINT", endpoint.as_str()),
        ("AZURE_ALLOW_HTTP", "true"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    ObjectServer {
        kind: StoreKind::Azure,
        endpoint,
        env,
        running,
        create: create_container,
        upload: upload_blob,
    }
}

/// `PUT /<account>/<container>?restype=container`, signed with the account's key.
fn create_container(server: &ObjectServer, name: &str) -> Result<(), String> {
    let path = format!("/{ACCOUNT}/{name}");
    signed_put(server, &path, Some("restype:container"), &[], b"", 201)
}

/// `PUT /<account>/<container>/<blob>`: a block blob, signed with the account's key.
fn upload_blob(
    server: &ObjectServer,
    container: &str,
    key: &str,
    body: &[u8],
) -> Result<(), String> {
    let path = format!("/{ACCOUNT}/{container}/{}", emulator::encode_key(key));
    signed_put(
        server,
        &path,
        None,
        &[("x-ms-blob-type", "BlockBlob")],
        body,
        201,
    )
}

/// A `PUT` with Shared Key authorization (the Blob service's string to sign: the verb, the
/// standard headers of which only Content-Length is sent, the `x-ms-` headers sorted, the
/// canonical resource with its query parameter).
fn signed_put(
    server: &ObjectServer,
    path: &str,
    query: Option<&str>,
    ms_headers: &[(&str, &str)],
    body: &[u8],
    expected: u16,
) -> Result<(), String> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers: Vec<(&str, String)> = ms_headers
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect();
    headers.push(("x-ms-date", date));
    headers.push(("x-ms-version", API_VERSION.to_string()));
    headers.sort();
    let length = if body.is_empty() {
        String::new()
    } else {
        body.len().to_string()
    };
    let mut to_sign = format!("PUT\n\n\n{length}\n\n\n\n\n\n\n\n\n");
    for (name, value) in &headers {
        to_sign.push_str(&format!("{name}:{value}\n"));
    }
    to_sign.push_str(&format!("/{ACCOUNT}{path}"));
    if let Some(parameter) = query {
        to_sign.push_str(&format!("\n{parameter}"));
    }
    headers.push((
        "Authorization",
        format!("SharedKey {ACCOUNT}:{}", sign(&to_sign)),
    ));
    let target = match query {
        Some(parameter) => format!("{path}?{}", parameter.replacen(':', "=", 1)),
        None => path.to_string(),
    };
    let (status, answer) = emulator::request(server.port(), "PUT", &target, &headers, body)
        .map_err(|e| e.to_string())?;
    if status == expected {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {answer}"))
    }
}

fn sign(string_to_sign: &str) -> String {
    let key = BASE64.decode(ACCOUNT_KEY).expect("azurite's key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}
