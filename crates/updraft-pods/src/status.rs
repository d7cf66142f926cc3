//! Reading a pod's status: has its container started, has it ended and how, or can it never
//! start. Pure: the follower feeds it every version of the pod the watch delivers.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use updraft_executor::ExecOutcome;

/// Waiting reasons that will not resolve by waiting: the try fails at once, naming them.
const FATAL_WAITING: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Where a pod's try stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not started yet; `why` is the current reason, if Kubernetes gave one (e.g.
    /// `Unschedulable: 0/3 nodes are available...`, `ContainerCreating`).
    Waiting { why: Option<String> },
    /// The container is running (or has run): its log can be read.
    Started,
    /// The pod is over.
    Ended(ExecOutcome),
    /// The container can never start (its image cannot be pulled, its config is wrong).
    CannotStart(String),
}

/// Where the try stands, judged by `container` (the one whose exit decides the try).
pub fn progress(pod: &Pod, container: &str) -> Progress {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let main = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == container));
    match phase {
        "Succeeded" => Progress::Ended(ExecOutcome::Success),
        "Failed" => Progress::Ended(failure(pod, main)),
        _ => before_end(pod, main),
    }
}

/// The termination message `container` left (Kubernetes reads it from its
/// `terminationMessagePath`, `/dev/termination-log` by default), if it wrote one.
pub fn termination_message<'a>(pod: &'a Pod, container: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
}

fn before_end(pod: &Pod, main: Option<&ContainerStatus>) -> Progress {
    let state = main.and_then(|c| c.state.as_ref());
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.clone().unwrap_or_default();
        let described = with_message(&reason, waiting.message.as_deref());
        if FATAL_WAITING.contains(&reason.as_str()) {
            return Progress::CannotStart(described);
        }
        if !reason.is_empty() {
            return Progress::Waiting {
                why: Some(described),
            };
        }
    }
    if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
        return Progress::Started;
    }
    Progress::Waiting {
        why: unschedulable(pod),
    }
}

/// `Unschedulable: <message>` when the scheduler said so.
fn unschedulable(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (scheduled.status == "False").then(|| {
        with_message(
            scheduled.reason.as_deref().unwrap_or("Unschedulable"),
            scheduled.message.as_deref(),
        )
    })
}

fn with_message(reason: &str, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
        _ => reason.to_owned(),
    }
}

fn failure(pod: &Pod, main: Option<&ContainerStatus>) -> ExecOutcome {
    let status = pod.status.as_ref();
    let pod_reason = status.and_then(|s| s.reason.as_deref());
    let terminated = main
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let exit_code = terminated.map(|t| t.exit_code);
    if let Some(reason @ ("Evicted" | "DeadlineExceeded")) = pod_reason {
        let message = with_message(reason, status.and_then(|s| s.message.as_deref()));
        return ExecOutcome::Failed {
            exit_code,
            signal: None,
            message,
        };
    }
    let Some(t) = terminated else {
        let message = with_message(
            pod_reason.unwrap_or("the pod failed"),
            status.and_then(|s| s.message.as_deref()),
        );
        return ExecOutcome::Failed {
            exit_code: None,
            signal: None,
            message,
        };
    };
    if t.exit_code == updraft_dag::SKIP_EXIT_CODE {
        return ExecOutcome::Skipped;
    }
    let message = match t.reason.as_deref() {
        Some("OOMKilled") => format!("OOMKilled (exit code {})", t.exit_code),
        Some(reason) if reason != "Error" && reason != "Completed" => {
            format!("exit code {} ({reason})", t.exit_code)
        }
        _ => format!("exit code {}", t.exit_code),
    };
    ExecOutcome::Failed {
        exit_code: Some(t.exit_code),
        signal: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": status,
        }))
        .unwrap()
    }

    fn terminated(phase: &str, code: i32, reason: &str) -> Pod {
        pod(serde_json::json!({"phase": phase, "containerStatuses": [{
            "name": "base", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason}}}]}))
    }

    fn waiting(reason: &str) -> Pod {
        pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{
            "name": "base", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "m"}}}]}),
        )
    }

    fn failed_message(p: Progress) -> String {
        match p {
            Progress::Ended(ExecOutcome::Failed { message, .. }) => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn exit_codes_map_to_outcomes() {
        assert_eq!(
            progress(&terminated("Succeeded", 0, "Completed"), "base"),
            Progress::Ended(ExecOutcome::Success)
        );
        assert_eq!(
            progress(&terminated("Failed", 99, "Error"), "base"),
            Progress::Ended(ExecOutcome::Skipped)
        );
        assert_eq!(
            failed_message(progress(&terminated("Failed", 3, "Error"), "base")),
            "exit code 3"
        );
        assert_eq!(
            failed_message(progress(&terminated("Failed", 137, "OOMKilled"), "base")),
            "OOMKilled (exit code 137)"
        );
    }

    #[test]
    fn pod_level_failures_name_their_reason() {
        for reason in ["Evicted", "DeadlineExceeded"] {
            let p = pod(serde_json::json!({"phase": "Failed", "reason": reason, "message": "why"}));
            assert_eq!(
                failed_message(progress(&p, "base")),
                format!("{reason}: why")
            );
        }
    }

    #[test]
    fn image_pull_errors_cannot_start_and_creating_waits() {
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            assert_eq!(
                progress(&waiting(reason), "base"),
                Progress::CannotStart(format!("{reason}: m"))
            );
        }
        assert_eq!(
            progress(&waiting("ContainerCreating"), "base"),
            Progress::Waiting {
                why: Some("ContainerCreating: m".into())
            }
        );
    }

    #[test]
    fn unschedulable_pods_wait_with_the_reason() {
        let p = pod(serde_json::json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available"}]}));
        assert_eq!(
            progress(&p, "base"),
            Progress::Waiting {
                why: Some("Unschedulable: 0/3 nodes are available".into())
            }
        );
    }

    #[test]
    fn a_running_container_has_started() {
        let p = pod(
            serde_json::json!({"phase": "Running", "containerStatuses": [{
            "name": "base", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}),
        );
        assert_eq!(progress(&p, "base"), Progress::Started);
        assert_eq!(progress(&p, "other"), Progress::Waiting { why: None });
    }
}
