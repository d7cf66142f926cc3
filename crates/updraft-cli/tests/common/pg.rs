//! PostgreSQL for the binary's tests: a fresh database per test on the suite's server
//! (`UPDRAFT_TEST_POSTGRES_URL`, started by `scripts/test`), or a whole cluster of the test's
//! own when the test must stop and restart the server.

#![allow(dead_code)] // each test binary uses a part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use updraft_store::{PgStore, Store};

const URL_VAR: &str = "UPDRAFT_TEST_POSTGRES_URL";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The suite's PostgreSQL server. Fails (never skips) without one.
pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: these tests need PostgreSQL. Run scripts/test (it starts a \
             throwaway server), or set {URL_VAR} to a role that may CREATE DATABASE"
        ),
    }
}

/// Run a future to completion on a runtime of its own (the tests themselves are synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// A database created for one test on the suite's server, dropped (with its connections)
/// when the test ends.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        Self::create_on(&server_url())
    }

    pub fn create_on(admin_url: &str) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "updraft_cli_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        execute(admin_url, &format!("CREATE DATABASE \"{name}\""));
        let options = PgConnectOptions::from_str(admin_url).expect("a PostgreSQL URL");
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        TestDatabase {
            url,
            name,
            admin_url: admin_url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let admin = self.admin_url.clone();
        // Best effort: the server may already be gone (a cluster of the test's own).
        let _ = std::thread::spawn(move || {
            block_on(async move {
                if let Ok(mut conn) = connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            })
        })
        .join();
    }
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&PgConnectOptions::from_str(url)?).await
}

fn execute(url: &str, sql: &str) {
    let url = url.to_string();
    let sql = sql.to_string();
    block_on(async move {
        let mut conn = connect(&url).await.expect("connecting to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// Read something through a store on `url`, in a runtime of its own.
pub fn with_store<T>(url: &str, read: impl AsyncFnOnce(&dyn Store) -> T) -> T {
    let url = url.to_string();
    block_on(async move {
        let store = PgStore::connect(&url).await.expect("connecting");
        let value = read(&store).await;
        store.close().await;
        value
    })
}

/// A PostgreSQL 15 cluster of the test's own (initdb + pg_ctl, as the `postgres` user when
/// run as root), so the test may stop and restart it. Removed when dropped.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    user: String,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("updraft-test-cluster-")
            .tempdir_in("/tmp")
            .expect("a temporary directory")
            .keep();
        let root = is_root();
        if root {
            chown_to_postgres(&dir);
        }
        let user = if root {
            "postgres".to_string()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "postgres".to_string())
        };
        let port = free_port();
        let cluster = PgCluster { dir, port, user };
        cluster.pg(&[
            "initdb",
            "-D",
            &cluster.data(),
            "-U",
            &cluster.user,
            "--auth=trust",
            "--no-sync",
        ]);
        cluster.start_server();
        cluster
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/postgres", self.user, self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Start the server and wait until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.pg(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-l",
            &log,
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ]);
    }

    /// Stop the server at once (`immediate`: connections are cut, as in a crash).
    pub fn stop_server(&self) {
        self.pg(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }

    fn pg(&self, args: &[&str]) {
        if let Err(e) = self.try_pg(args) {
            panic!("{e}");
        }
    }

    fn try_pg(&self, args: &[&str]) -> Result<(), String> {
        let program = Path::new(PG_BIN).join(args[0]);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(&args[1..])
            .output()
            .map_err(|e| format!("running {}: {e}", program.display()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        // It may be stopped already.
        let _ = self.try_pg(&["pg_ctl", "-D", &data, "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chown_to_postgres(dir: &Path) {
    let status = Command::new("chown")
        .arg("postgres:")
        .arg(dir)
        .status()
        .expect("running chown");
    assert!(status.success(), "chown postgres: {} failed", dir.display());
}

/// Whether the tests run as root (the owner of this process's /proc entry).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// How long the tests here wait for whole workloads.
pub const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(180);
