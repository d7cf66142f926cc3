//! The container image, built without a container daemon: `scripts/image` writes an OCI image
//! layout around the binary under test; the layout's index, manifest, config and layer are
//! checked against their digests, and the one layer, unpacked, is a root file system in which
//! `updraft version` and `updraft standalone` run as the image's user (through `chroot`, which
//! needs root: the test fails, naming why, when it is not root).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{DEFAULT_TIMEOUT, bin, wait_until};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The blob `digest` of the layout at `layout`, its digest checked.
fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let data = fs::read(layout.join("blobs/sha256").join(hex)).expect("the blob is in the layout");
    assert_eq!(sha256_hex(&data), hex, "blob {digest}");
    data
}

fn json_blob(layout: &Path, descriptor: &Value) -> Value {
    let data = blob(layout, descriptor["digest"].as_str().unwrap());
    assert_eq!(descriptor["size"], data.len(), "size of {descriptor}");
    serde_json::from_slice(&data).unwrap()
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// `chroot` into `rootfs` as the image's user, with only the image's environment and `env`.
fn in_image(rootfs: &Path, config: &Value, env: &[(&str, &str)], args: &[&str]) -> Command {
    let user = config["config"]["User"].as_str().unwrap();
    let mut command = Command::new("/usr/sbin/chroot");
    command
        .arg(format!("--userspec={user}"))
        .arg(rootfs)
        .args(args)
        .env_clear();
    for pair in config["config"]["Env"].as_array().unwrap() {
        let (name, value) = pair.as_str().unwrap().split_once('=').unwrap();
        command.env(name, value);
    }
    command.envs(env.iter().copied());
    command
}

#[test]
fn the_image_s_root_file_system_runs_updraft_as_its_user() {
    assert!(
        is_root(),
        "this test unpacks the image and runs it with chroot, which needs root"
    );
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("image");
    let built = Command::new(repo_root().join("scripts/image"))
        .args(["--binary", bin(), "--tag", "test", "--out"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(built.status.success(), "scripts/image: {built:?}");
    assert!(
        String::from_utf8_lossy(&built.stdout).contains("MiB compressed"),
        "it reports the image's size: {built:?}"
    );

    let layout_file: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout_file["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    let manifest = json_blob(&layout, entry);
    let config = json_blob(&layout, &manifest["config"]);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532", "not root");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/updraft"])
    );
    let layer_descriptor = &manifest["layers"][0];
    assert_eq!(
        layer_descriptor["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer_digest = layer_descriptor["digest"].as_str().unwrap();
    blob(&layout, layer_digest);
    let layer_path = layout
        .join("blobs/sha256")
        .join(layer_digest.strip_prefix("sha256:").unwrap());
    let tar = Command::new("gzip")
        .arg("-dc")
        .arg(&layer_path)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar)),
        "the config names the unpacked layer"
    );

    let rootfs = work.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(unpacked.success());
    assert!(
        !rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists(),
        "no shell in the image"
    );

    let version = in_image(
        &rootfs,
        &config,
        &[],
        &["/usr/local/bin/updraft", "version"],
    )
    .output()
    .unwrap();
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );

    // Standalone: the image's environment (its home, the API on every address), a free port.
    let log_path = work.path().join("standalone.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut standalone = in_image(
        &rootfs,
        &config,
        &[("UPDRAFT__API__PORT", "0")],
        &["/usr/local/bin/updraft", "standalone"],
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    let port = wait_until(
        "standalone to announce its address",
        DEFAULT_TIMEOUT,
        || {
            let output = fs::read_to_string(&log_path).unwrap_or_default();
            let (_, rest) = output.split_once("updraft web UI and API on http://")?;
            let address = rest.split(['/', ' ', '\n']).next()?;
            Some(address.rsplit_once(':')?.1.to_string())
        },
    );
    let address = format!("127.0.0.1:{port}");
    let health = wait_until("the API to answer", DEFAULT_TIMEOUT, || {
        common::http::try_api(&address, "GET", "/monitor/health", None)
    });
    assert_eq!(health.0, 200, "{health:?}");
    assert_eq!(health.1["metadatabase"]["status"], "healthy", "{health:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standalone.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = standalone.wait().unwrap();
    let output = fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "standalone stopped cleanly: {output}");
    let home = rootfs.join("home/nonroot");
    assert!(home.join("updraft.db").exists(), "{output}");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&fs::metadata(home.join("updraft.db")).unwrap());
    assert_eq!(owner, 65532, "written as the image's user");
}
