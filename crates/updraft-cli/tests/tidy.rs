//! Tidy checks over the repository's sources that keep documentation from rotting.

use std::path::Path;
use std::process::Command;

fn repository_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The Rust files git tracks under `crates/` and `bench/`.
fn tracked_rust_files() -> Vec<String> {
    let output = Command::new("git")
        .args(["ls-files", "--", "crates/*.rs", "bench/*.rs"])
        .current_dir(repository_root())
        .output()
        .expect("running git ls-files (the tidy checks read the files git tracks)");
    assert!(
        output.status.success(),
        "git ls-files failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("file names in UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    let files = tracked_rust_files();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("crates/updraft-cli/tests/tidy.rs")),
        "git ls-files listed none of the sources it should: {files:?}"
    );
    let undocumented: Vec<&String> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(repository_root().join(file))
                .unwrap_or_else(|e| panic!("reading {file}: {e}"));
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "these files do not open with a `//!` comment saying what they are for:\n  {}",
        undocumented
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}
