//! The processes of a service, through the real binary: a scheduler killed with `kill -9`
//! leaves no try running behind it (so a retry never runs beside the try it replaces), and
//! SIGTERM ends `scheduler`, `standalone` and `server` within their hard deadline even when
//! they are stuck (here: on a "PostgreSQL" that accepts connections and never answers).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{DEFAULT_TIMEOUT, Home, SchedulerProcess, process_alive, wait_until};
use nix::sys::signal::Signal;

/// The lines of `file`, in the order they were appended.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A DAG `orphan` whose one task, retried once at once, writes `<n> started` and
/// `<n> finished` to `ledger`; its first try records its pid and a child's (a second process
/// in its group) in `pids`, and takes 5 s.
fn write_orphan_dag(home: &Home, ledger: &Path, pids: &Path) {
    // The first try records its pid and a child's (a second process in its group), then
    // would take 5 s; the retry ends at once. Each writes when it starts and when it ends.
    let script = format!(
        r#"n={{{{ ti.try_number }}}}
echo "$n started" >> '{ledger}'
if [ "$n" -eq 1 ]; then
  sleep 60 &
  echo "$$ $!" > '{pids}.tmp' && mv '{pids}.tmp' '{pids}'
  sleep 5
fi
echo "$n finished" >> '{ledger}'
"#,
        ledger = ledger.display(),
        pids = pids.display(),
    );
    let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
    home.write_dag(
        "orphan.yaml",
        &format!(
            "dag_id: orphan\ntasks:\n  - task_id: t\n    retries: 1\n    retry_delay: 0s\n    bash: |\n{indented}"
        ),
    );
}

/// The pids `write_orphan_dag`'s first try recorded: its leader and its child.
fn wait_pids(home: &Home, pids: &Path) -> (i32, i32) {
    let recorded = home.wait_file(pids);
    let [leader, child]: [i32; 2] = recorded
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert!(process_alive(leader) && process_alive(child));
    (leader, child)
}

/// Kills a process group when dropped: for what a failing test leaves behind.
struct KillGroupOnDrop(i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

#[test]
fn a_killed_schedulers_running_try_is_killed_with_its_children_before_the_retry() {
    let home = Home::new();
    let work = home.work();
    let ledger = work.join("ledger");
    let pids = work.join("pids");
    write_orphan_dag(&home, &ledger, &pids);
    let mut scheduler = home.start_scheduler();
    let run_id = home.trigger("orphan", None);
    let (leader, child) = wait_pids(&home, &pids);
    let _leftover = KillGroupOnDrop(leader);
    scheduler.kill();

    // Both processes of the try are gone within a moment, long before the try would have
    // ended, and before any scheduler runs again.
    let killed_at = Instant::now();
    wait_until(
        "the killed scheduler's try to be gone",
        Duration::from_secs(3),
        || (!process_alive(leader) && !process_alive(child)).then_some(()),
    );
    let gone_after = killed_at.elapsed();
    eprintln!("the orphaned try's processes were gone {gone_after:?} after the kill");

    let _restarted = home.start_scheduler();
    assert_eq!(home.wait_run_finished("orphan", &run_id), "success");
    let ti = &home.task_instances("orphan", &run_id)["t"];
    assert_eq!(ti["try_number"], 2, "{ti}");
    assert_eq!(
        lines(&ledger),
        ["1 started", "2 started", "2 finished"],
        "the first try ended unseen, or ran beside its retry"
    );
    let try1 = home.logs("orphan", &run_id, "t", Some(1));
    assert!(try1.contains("scheduler stopped"), "try 1 log:\n{try1}");
}

/// The reaper of the scheduler `scheduler`: its child running `updraft-reaper`.
fn reaper_of(scheduler: i32) -> i32 {
    let children = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    let reapers: Vec<i32> = children
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            parent == Some(scheduler)
                && String::from_utf8_lossy(&cmdline).contains("updraft-reaper")
        })
        .collect();
    assert_eq!(reapers.len(), 1, "the scheduler's reapers: {reapers:?}");
    reapers[0]
}

/// When the reaper is killed with its scheduler (`pkill -9`), the restarted scheduler finds the
/// try's processes still running on this host, kills them and waits until they are gone
/// before it retries the try.
#[test]
fn a_restarted_scheduler_kills_what_a_killed_scheduler_left_before_the_retry() {
    let home = Home::new();
    let work = home.work();
    let ledger = work.join("ledger");
    let pids = work.join("pids");
    write_orphan_dag(&home, &ledger, &pids);
    let mut scheduler = home.start_scheduler();
    let run_id = home.trigger("orphan", None);
    let (leader, child) = wait_pids(&home, &pids);
    let _leftover = KillGroupOnDrop(leader);
    // The try's pid is recorded with its start.
    home.wait_task_state("orphan", &run_id, "t", "running");
    let reaper = reaper_of(scheduler.pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(reaper), Signal::SIGKILL).unwrap();
    scheduler.kill();
    assert!(
        process_alive(leader) && process_alive(child),
        "nothing was left running"
    );

    let _restarted = home.start_scheduler();
    assert_eq!(home.wait_run_finished("orphan", &run_id), "success");
    assert!(
        !process_alive(leader) && !process_alive(child),
        "the first try still runs after its retry"
    );
    assert_eq!(
        lines(&ledger),
        ["1 started", "2 started", "2 finished"],
        "the first try ended unseen, or ran beside its retry"
    );
    let try1 = home.logs("orphan", &run_id, "t", Some(1));
    assert!(
        try1.contains("its processes still running on this host were killed"),
        "try 1 log:\n{try1}"
    );
}

/// A TCP server that accepts connections and never answers: a database that hangs.
struct SilentServer {
    address: String,
    accepted: Arc<AtomicUsize>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                // Read and drop what the client says, holding the connection open.
                std::thread::spawn(move || {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        SilentServer { address, accepted }
    }
}

/// A home whose database hangs, with 1 s graces: the hard deadline is 1 + 1 + 5 = 7 s.
fn stuck_home(server: &SilentServer) -> Home {
    Home::new()
        .with_env(
            "UPDRAFT__DATABASE__URL",
            &format!("postgres://updraft@{}/updraft", server.address),
        )
        .with_env("UPDRAFT__DATABASE__ACQUIRE_TIMEOUT", "1h")
        .with_env("UPDRAFT__SCHEDULER__SHUTDOWN_GRACE", "1s")
        .with_env("UPDRAFT__SCHEDULER__KILL_GRACE", "1s")
}

const HARD_DEADLINE: Duration = Duration::from_secs(7);
/// Slack for a loaded machine; the exit is measured against the deadline itself too.
const SLACK: Duration = Duration::from_secs(8);

/// Sends SIGTERM once the service waits on the silent database; returns its exit status and
/// how long after the signal it came.
fn terminate_stuck(service: &mut SchedulerProcess, server: &SilentServer) -> (i32, Duration) {
    wait_until(
        "the service to connect to the database",
        DEFAULT_TIMEOUT,
        || (server.accepted.load(Ordering::SeqCst) > 0).then_some(()),
    );
    let signalled = Instant::now();
    service.terminate();
    let status = service.wait_exit(HARD_DEADLINE + SLACK + Duration::from_secs(30));
    (status.code().unwrap_or(-1), signalled.elapsed())
}

fn assert_stopped_at_the_deadline(command: &str, code: i32, took: Duration, output: &str) {
    eprintln!("{command}: exited {code} {took:?} after SIGTERM");
    assert_eq!(code, 143, "{command}: exit status\n{output}");
    assert!(
        took >= HARD_DEADLINE - Duration::from_millis(500),
        "{command} exited before its deadline ({took:?}) though stuck\n{output}"
    );
    assert!(
        took <= HARD_DEADLINE + SLACK,
        "{command} took {took:?} to exit after SIGTERM\n{output}"
    );
    assert!(
        output.contains("the graceful stop did not finish within 7s of SIGTERM: exiting now"),
        "{command}: no line says why it exited\n{output}"
    );
}

#[test]
fn sigterm_ends_a_stuck_scheduler_within_its_hard_deadline() {
    let server = SilentServer::start();
    let home = stuck_home(&server);
    let mut scheduler = home.start_scheduler();
    let (code, took) = terminate_stuck(&mut scheduler, &server);
    assert_stopped_at_the_deadline("scheduler", code, took, &scheduler.output());
}

#[test]
fn sigterm_ends_a_stuck_standalone_within_its_hard_deadline() {
    let server = SilentServer::start();
    let home = stuck_home(&server);
    let mut standalone = home.start_standalone();
    let (code, took) = terminate_stuck(&mut standalone, &server);
    assert_stopped_at_the_deadline("standalone", code, took, &standalone.output());
}

#[test]
fn sigterm_ends_a_stuck_server_within_its_hard_deadline() {
    let server = SilentServer::start();
    let home = stuck_home(&server);
    let mut api = home.start_server();
    let (code, took) = terminate_stuck(&mut api, &server);
    assert_stopped_at_the_deadline("server", code, took, &api.output());
}

#[test]
fn a_second_signal_ends_a_stopping_service_at_once() {
    let server = SilentServer::start();
    let home = stuck_home(&server);
    let mut scheduler = home.start_scheduler();
    wait_until(
        "the scheduler to connect to the database",
        DEFAULT_TIMEOUT,
        || (server.accepted.load(Ordering::SeqCst) > 0).then_some(()),
    );
    scheduler.terminate();
    wait_until("the first signal to be heard", DEFAULT_TIMEOUT, || {
        scheduler
            .output()
            .contains("SIGTERM received: stopping")
            .then_some(())
    });
    let signalled = Instant::now();
    scheduler.signal(Signal::SIGINT);
    let status = scheduler.wait_exit(HARD_DEADLINE + SLACK);
    let took = signalled.elapsed();
    let output = scheduler.output();
    assert_eq!(status.code(), Some(130), "{output}");
    assert!(
        took < HARD_DEADLINE / 2,
        "the second signal took {took:?} to end the process\n{output}"
    );
    assert!(
        output.contains("SIGINT received again while stopping: exiting now"),
        "{output}"
    );
}
