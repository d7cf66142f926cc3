//! `updraft-kube-fake [--kubeconfig PATH]`: serves the fake Kubernetes API on a free local
//! port until interrupted, for trying updraft's pod tasks by hand; with `--kubeconfig`, writes
//! a kubeconfig pointing at it.

use updraft_kube_fake::FakeKube;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kubeconfig = match args.as_slice() {
        [] => None,
        [flag, path] if flag == "--kubeconfig" => Some(std::path::PathBuf::from(path)),
        _ => {
            eprintln!("usage: updraft-kube-fake [--kubeconfig PATH]");
            std::process::exit(2);
        }
    };
    let fake = FakeKube::start().await;
    if let Some(path) = &kubeconfig {
        if let Err(e) = fake.write_kubeconfig(path) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        say(&format!("kubeconfig written to {}", path.display()));
    }
    say(&format!("fake Kubernetes API at {}", fake.url()));
    let _ = tokio::signal::ctrl_c().await;
}

/// Prints a line; a reader that has gone away does not stop the server.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}
