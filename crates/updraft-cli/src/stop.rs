//! Stopping a service on SIGTERM or SIGINT, with a hard deadline.
//!
//! The signals are taken away from every thread and waited for on a thread of their own, so
//! they are heard whatever the async runtime is doing (a stuck database call, a long pass,
//! workers all busy). The first one asks the service to stop gracefully (the receiver returned
//! by [`on_signal`] becomes true) and starts a deadline: if the process has not exited by then,
//! or a second signal comes, it exits at once with the status a shell gives a process ended by
//! that signal (128 + its number: 143 for SIGTERM, 130 for SIGINT), after one log line saying
//! so. Local tries left running then are killed by the executor's reaper.

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use tokio::sync::watch;

/// Added to the time a graceful stop may take (`shutdown_grace` for running tries to finish,
/// `kill_grace` for the ones still running to be killed) for the final records and exit.
pub const HARD_STOP_MARGIN: Duration = Duration::from_secs(5);

/// How long after a stop signal the process exits at the latest.
pub fn hard_deadline(shutdown_grace: Duration, kill_grace: Duration) -> Duration {
    shutdown_grace
        .saturating_add(kill_grace)
        .saturating_add(HARD_STOP_MARGIN)
}

/// Starts listening for SIGTERM and SIGINT; the receiver becomes true at the first one.
///
/// Must be called before any other thread is started (the async runtime included): the
/// signals are blocked in the calling thread, and threads inherit that mask. Child processes
/// do not: the standard library resets the mask when it spawns one.
pub fn on_signal(deadline: Duration) -> Result<watch::Receiver<bool>> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("blocking SIGTERM and SIGINT")?;
    let (tx, rx) = watch::channel(false);
    std::thread::Builder::new()
        .name("updraft-stop".into())
        .spawn(move || wait_and_stop(signals, deadline, tx))
        .context("starting the signal thread")?;
    Ok(rx)
}

fn wait_and_stop(signals: SigSet, deadline: Duration, stop: watch::Sender<bool>) {
    let Ok(first) = signals.wait() else {
        tracing::error!("cannot wait for SIGTERM and SIGINT: stop signals will be ignored");
        return;
    };
    tracing::info!(
        "{} received: stopping; the process exits within {} at the latest",
        first.as_str(),
        humantime::format_duration(deadline)
    );
    let _ = stop.send(true);
    let timer = std::thread::Builder::new()
        .name("updraft-deadline".into())
        .spawn(move || {
            std::thread::sleep(deadline);
            tracing::error!(
                "the graceful stop did not finish within {} of {}: exiting now",
                humantime::format_duration(deadline),
                first.as_str()
            );
            std::process::exit(exit_code(first));
        });
    if let Err(e) = timer {
        tracing::error!("cannot start the stop deadline's timer: {e}");
    }
    if let Ok(second) = signals.wait() {
        tracing::error!(
            "{} received again while stopping: exiting now",
            second.as_str()
        );
        std::process::exit(exit_code(second));
    }
}

/// What a shell reports for a process ended by `signal`.
fn exit_code(signal: Signal) -> i32 {
    128 + signal as i32
}
