//! Live updates of the web UI when the server runs without a scheduler in its process
//! (`updraft server` beside `updraft scheduler`): changes recorded by the other process reach
//! the page's Server-Sent Events through the database's change log.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{DEFAULT_TIMEOUT, Home, SchedulerProcess, wait_until};

fn ui_address(service: &SchedulerProcess) -> String {
    wait_until("the web server to start", DEFAULT_TIMEOUT, || {
        let output = service.output();
        let line = output
            .lines()
            .find(|l| l.contains("updraft web UI and API on http://"))?;
        Some(line.rsplit("http://").next()?.trim().to_string())
    })
}

/// One Server-Sent Events connection, read line by line.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: &str, path: &str) -> Events {
        let mut stream = TcpStream::connect(addr).expect("connecting to the server");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Events {
            reader: BufReader::new(stream),
        }
    }

    /// Read until a line containing `want`; returns everything read. Panics after a deadline.
    fn until(&mut self, want: &str) -> String {
        let started = Instant::now();
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the event stream ended; read:\n{seen}"),
                Ok(_) => {
                    seen.push_str(&line);
                    if line.contains(want) {
                        return seen;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading events: {e}"),
            }
            assert!(
                started.elapsed() < DEFAULT_TIMEOUT,
                "no {want:?} within {DEFAULT_TIMEOUT:?}; read:\n{seen}"
            );
        }
    }
}

#[test]
fn a_server_without_scheduler_still_streams_state_changes() {
    let home = Home::new();
    home.write_dag(
        "live.yaml",
        "dag_id: live\nschedule: null\ntasks:\n  - task_id: a\n    bash: echo a\n",
    );
    home.write_dag(
        "quiet.yaml",
        "dag_id: quiet\nschedule: null\ntasks:\n  - task_id: a\n    bash: echo a\n",
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("live");
    let server = home.start_server();
    let addr = ui_address(&server);

    let mut events = Events::open(&addr, "/ui/events?dag_id=live");
    events.until("event: ready");
    let run_id = home.trigger("live", None);
    let seen = events.until(&format!("\"run_ids\":[\"{run_id}\"]"));
    assert!(seen.contains("event: change"), "{seen}");
    assert!(seen.contains(r#""dag_ids":["live"]"#), "{seen}");
    // Another DAG's changes are not sent to this page; the next run of its own DAG is.
    assert_eq!(home.wait_run_finished("live", &run_id), "success");
    let quiet = home.trigger("quiet", None);
    assert_eq!(home.wait_run_finished("quiet", &quiet), "success");
    let second = home.trigger("live", None);
    let later = events.until(&format!("\"run_ids\":[\"{second}\"]"));
    assert!(!later.contains("quiet"), "{later}");
}
