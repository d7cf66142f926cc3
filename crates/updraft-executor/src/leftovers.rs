//! Process groups of tries left running on this host by a scheduler that is gone.
//!
//! The local executor's reaper kills a try's group the moment its scheduler dies (see
//! [`crate::local`]). This is the check made on the same host before such a try is retried,
//! for when the reaper could not act (it was killed too, say by `pkill -9`): the group the try
//! recorded (its leader's pid) is killed, and the retry waits until it is gone. A group whose
//! leader is alive but started at another time than the try belongs to another program (the
//! pid was reused) and is left alone.
//!
//! A try whose start was never recorded (its scheduler froze or died between the spawn and
//! the record) has no pid in the store. Every local try therefore carries a mark in its
//! environment, [`TRY_MARK_VAR`], naming its scheduler's process and the try; the processes
//! of this host carrying an orphaned try's mark are found in `/proc` and their groups killed
//! the same way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How far the start of a try's leader (as the kernel tells it, to 10 ms, on a boot time
/// given in whole seconds) may be from the start recorded for the try (stamped just before
/// the spawn).
const SAME_START: Duration = Duration::from_secs(3);

/// The environment variable holding a local try's mark (see [`try_mark`]).
pub const TRY_MARK_VAR: &str = "UPDRAFT_TRY_MARK";

/// The mark of try `try_number` of the instance `key` names (its own try number is not
/// used), launched by the scheduler process `owner_pid` of this host: unique on the host
/// while that process exists. A mapped instance's mark ends in `@<map index>`.
pub fn try_mark(owner_pid: u32, key: &crate::TryKey, try_number: u32) -> String {
    let (run_pk, task_id) = (key.run_pk, &key.task_id);
    if key.map_index < 0 {
        format!("{owner_pid}/{run_pk}/{try_number}/{task_id}")
    } else {
        format!(
            "{owner_pid}/{run_pk}/{try_number}/{task_id}@{}",
            key.map_index
        )
    }
}

/// Kills the process groups of every process of this host whose environment carries `mark`
/// (`SIGKILL`: the try is abandoned), and waits up to `patience` for them to be gone.
pub async fn end_marked_groups(mark: &str, patience: Duration) -> Leftover {
    let wanted = format!("{TRY_MARK_VAR}={mark}");
    let groups = marked_groups(wanted.as_bytes());
    if groups.is_empty() {
        return Leftover::None;
    }
    for group in &groups {
        let _ = killpg(*group, Signal::SIGKILL);
    }
    let until = tokio::time::Instant::now() + patience;
    while groups.iter().any(|g| killpg(*g, None) != Err(Errno::ESRCH)) {
        if tokio::time::Instant::now() >= until {
            return Leftover::Lingering;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Leftover::Killed
}

/// The process groups of the processes whose environment holds the entry `wanted`. This
/// process's own group is never among them.
fn marked_groups(wanted: &[u8]) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = nix::unistd::getpgrp();
    let mut groups = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|var| var == wanted) {
            continue;
        }
        if let Some(group) = group_of(pid)
            && group != own
            && !groups.contains(&group)
        {
            groups.push(group);
        }
    }
    groups
}

/// The process group of the running process `pid`.
fn group_of(pid: i32) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    // Field 5 of the whole line: the process group.
    fields.get(2)?.parse().ok().map(Pid::from_raw)
}

/// What became of an orphaned try's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// Nothing of it runs.
    None,
    /// It still ran; it was killed and is gone.
    Killed,
    /// Its pid now leads another program's group: left alone.
    Reused,
    /// Killed, but something of it is still there after the wait (a zombie nobody reaps, or a
    /// process stuck in the kernel).
    Lingering,
}

/// Kills what runs of the process group `pgid` of a try started at `started_at` on this host
/// (`SIGKILL`: the try is abandoned), and waits up to `patience` for it to be gone.
pub async fn end_leftover_group(
    pgid: u32,
    started_at: DateTime<Utc>,
    patience: Duration,
) -> Leftover {
    let Ok(raw) = i32::try_from(pgid) else {
        return Leftover::None;
    };
    let group = Pid::from_raw(raw);
    if killpg(group, None) == Err(Errno::ESRCH) {
        return Leftover::None;
    }
    // With its leader gone the group keeps its id, which no new process can take while the
    // group exists: it is the try's.
    if let Some(leader_start) = running_since(raw) {
        let apart = (leader_start - started_at)
            .abs()
            .to_std()
            .unwrap_or(Duration::MAX);
        if apart > SAME_START {
            return Leftover::Reused;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    let until = tokio::time::Instant::now() + patience;
    while killpg(group, None) != Err(Errno::ESRCH) {
        if tokio::time::Instant::now() >= until {
            return Leftover::Lingering;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Leftover::Killed
}

/// When the process `pid` started, if it runs (a zombie does not).
fn running_since(pid: i32) -> Option<DateTime<Utc>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    // Field 22 of the whole line: the start, in clock ticks since boot.
    let ticks: i64 = fields.get(19)?.parse().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)?;
    let boot = boot_time()?;
    Some(boot + chrono::Duration::milliseconds(ticks * 1000 / per_second))
}

/// The wall-clock time the system booted, from `/proc/stat`.
fn boot_time() -> Option<DateTime<Utc>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(seconds, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked_key() -> crate::TryKey {
        crate::TryKey {
            run_pk: 7,
            task_id: "marked".into(),
            map_index: -1,
            try_number: 1,
        }
    }

    #[test]
    fn a_mapped_instance_s_mark_names_its_map_index() {
        let unmapped = try_mark(1, &marked_key(), 2);
        assert_eq!(unmapped, "1/7/2/marked");
        let mapped = crate::TryKey {
            map_index: 3,
            ..marked_key()
        };
        assert_eq!(try_mark(1, &mapped, 2), "1/7/2/marked@3");
    }

    #[test]
    fn this_process_started_before_now_and_after_boot() {
        let since = running_since(std::process::id() as i32).expect("this process runs");
        let now = Utc::now();
        assert!(since <= now + chrono::Duration::seconds(1), "{since} {now}");
        assert!(since >= boot_time().unwrap(), "{since}");
    }

    #[tokio::test]
    async fn groups_carrying_a_tries_mark_are_killed_and_others_left_alone() {
        let mark = try_mark(std::process::id(), &marked_key(), 1);
        let spawn = |mark: &str| {
            tokio::process::Command::new("sh")
                .args(["-c", "sleep 30 & wait"])
                .env(TRY_MARK_VAR, mark)
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        };
        let mut marked = spawn(&mark);
        let mut other = spawn(&try_mark(std::process::id(), &marked_key(), 2));
        let reaped = tokio::spawn(async move { marked.wait().await });
        assert_eq!(
            end_marked_groups(&mark, Duration::from_secs(5)).await,
            Leftover::Killed
        );
        let status = reaped.await.unwrap().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_eq!(
            other.try_wait().unwrap(),
            None,
            "another try's group was killed"
        );
        assert_eq!(
            end_marked_groups(&mark, Duration::from_secs(5)).await,
            Leftover::None
        );
    }

    #[tokio::test]
    async fn a_group_started_at_another_time_is_left_alone() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(
            end_leftover_group(pid, long_ago, Duration::from_secs(5)).await,
            Leftover::Reused
        );
        assert_eq!(child.try_wait().unwrap(), None, "the group was killed");
        // Recorded as started now, it is the try's, and ends.
        let reaped = tokio::spawn(async move { child.wait().await });
        assert_eq!(
            end_leftover_group(pid, Utc::now(), Duration::from_secs(5)).await,
            Leftover::Killed
        );
        let status = reaped.await.unwrap().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_eq!(
            end_leftover_group(pid, Utc::now(), Duration::from_secs(5)).await,
            Leftover::None
        );
    }
}
