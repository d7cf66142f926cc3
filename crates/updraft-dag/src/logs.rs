//! Where a try's log lives under the logs folder: Airflow's layout, with every id kept inside
//! its own directory. Pure: the executors write there, the API and the CLI read from there.

use std::path::{Path, PathBuf};

/// `<logs_root>/<tenant>/<dag_id>/<run_id>/<task_id>/attempt=<n>.log`, Airflow's layout.
///
/// Each component is kept readable (`scheduled__2024-01-01T00:00:00+00:00` stays as is) but
/// cannot leave its directory: `%`, `/`, `\`, NUL and control characters are percent-encoded
/// (`%2F`, ...), a component of only dots (`.`, `..`) has its dots encoded (`%2E`), and an
/// empty one becomes `%`. The encoding is injective, so distinct ids get distinct paths.
pub fn log_path(
    logs_root: &Path,
    tenant: &str,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: u32,
) -> PathBuf {
    let mut p = logs_root.to_path_buf();
    for part in [tenant, dag_id, run_id, task_id] {
        p.push(path_component(part));
    }
    p.push(format!("attempt={try_number}.log"));
    p
}

/// [`log_path`] of a mapped task instance: Airflow's `map_index=<i>` folder between the task
/// and the attempt (`.../<task_id>/map_index=3/attempt=1.log`). A negative `map_index` (an
/// unmapped instance) gives exactly [`log_path`].
pub fn mapped_log_path(
    logs_root: &Path,
    tenant: &str,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    try_number: u32,
) -> PathBuf {
    let mut p = log_path(logs_root, tenant, dag_id, run_id, task_id, try_number);
    if map_index >= 0 {
        p.pop();
        p.push(format!("map_index={map_index}"));
        p.push(format!("attempt={try_number}.log"));
    }
    p
}

fn path_component(s: &str) -> String {
    if s.is_empty() {
        return "%".to_owned();
    }
    if s.bytes().all(|b| b == b'.') {
        return "%2E".repeat(s.len());
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '/' | '\\' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_instances_get_a_map_index_folder_and_unmapped_ones_keep_their_path() {
        let root = Path::new("/logs");
        assert_eq!(
            mapped_log_path(root, "t", "d", "r", "x", 3, 2),
            Path::new("/logs/t/d/r/x/map_index=3/attempt=2.log")
        );
        assert_eq!(
            mapped_log_path(root, "t", "d", "r", "x", 0, 1),
            Path::new("/logs/t/d/r/x/map_index=0/attempt=1.log")
        );
        assert_eq!(
            mapped_log_path(root, "t", "d", "r", "x", -1, 1),
            log_path(root, "t", "d", "r", "x", 1)
        );
    }

    #[test]
    fn log_paths_follow_airflow_and_cannot_escape() {
        let root = Path::new("/logs");
        assert_eq!(
            log_path(
                root,
                "acme",
                "etl",
                "scheduled__2024-01-01T00:00:00+00:00",
                "load",
                2
            ),
            Path::new("/logs/acme/etl/scheduled__2024-01-01T00:00:00+00:00/load/attempt=2.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "../../etc/passwd", "x", 1),
            Path::new("/logs/t/d/..%2F..%2Fetc%2Fpasswd/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "..", "x", 1),
            Path::new("/logs/t/d/%2E%2E/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", ".", "x", 1),
            Path::new("/logs/t/d/%2E/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "", "x", 1),
            Path::new("/logs/t/d/%/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "/abs", "x", 1),
            Path::new("/logs/t/d/%2Fabs/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "a%2Fb", "x", 1),
            Path::new("/logs/t/d/a%252Fb/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "a\nb\\c", "x", 1),
            Path::new("/logs/t/d/a%0Ab%5Cc/x/attempt=1.log")
        );
        assert_eq!(
            log_path(root, "t", "d", "...x", "x", 1),
            Path::new("/logs/t/d/...x/x/attempt=1.log")
        );

        // Whatever the ids, the path stays 5 levels under the root, with no `.`/`..` component.
        for evil in ["..", "../..", "a/../../b", "/", "\0", "./.", "%2E%2E"] {
            let p = log_path(root, evil, evil, evil, evil, 1);
            let rel = p.strip_prefix(root).unwrap();
            let parts: Vec<_> = rel.components().collect();
            assert_eq!(parts.len(), 5, "{evil:?} -> {p:?}");
            assert!(
                parts
                    .iter()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{p:?}"
            );
        }
    }
}
