//! The `path` check: does an absolute path, or a glob pattern as Python's `glob` reads it
//! (`*`, `?`, `[...]`, `[!...]` within a name; `**` for any number of folders; names starting
//! with `.` matched only by a pattern starting with `.`), match something?

use std::path::{Path, PathBuf};

/// How many folder entries one poke may look at: a pattern over a huge tree gives up
/// rather than hold a blocking thread for long.
const MAX_ENTRIES: usize = 100_000;

/// The first path matching `pattern`, if any.
pub(super) fn first_match(pattern: &str) -> Result<Option<PathBuf>, String> {
    if !pattern.starts_with('/') {
        return Err(format!(
            "path {pattern:?} is relative: a sensor's path must be absolute"
        ));
    }
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    if !parts.iter().any(|p| is_pattern(p)) {
        let path = PathBuf::from(pattern);
        return Ok(path.symlink_metadata().is_ok().then_some(path));
    }
    let mut budget = MAX_ENTRIES;
    let mut current = vec![PathBuf::from("/")];
    for part in parts {
        current = step(&current, part, &mut budget)?;
        if current.is_empty() {
            return Ok(None);
        }
    }
    Ok(current.into_iter().next())
}

fn is_pattern(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The paths one component further down from `current`.
fn step(current: &[PathBuf], part: &str, budget: &mut usize) -> Result<Vec<PathBuf>, String> {
    let mut next = Vec::new();
    for dir in current {
        if part == "**" {
            descendants(dir, &mut next, budget)?;
        } else if is_pattern(part) {
            for (name, path) in entries(dir, budget)? {
                if (!name.starts_with('.') || part.starts_with('.')) && matches(part, &name) {
                    next.push(path);
                }
            }
        } else {
            let path = dir.join(part);
            if path.symlink_metadata().is_ok() {
                next.push(path);
            }
        }
    }
    next.sort();
    next.dedup();
    Ok(next)
}

/// `dir` and every folder below it (not following links), hidden ones left out.
fn descendants(dir: &Path, out: &mut Vec<PathBuf>, budget: &mut usize) -> Result<(), String> {
    out.push(dir.to_path_buf());
    for (name, path) in entries(dir, budget)? {
        if !name.starts_with('.') && path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            descendants(&path, out, budget)?;
        }
    }
    Ok(())
}

/// The entries of `dir` (none when it cannot be read), counted against `budget`.
fn entries(dir: &Path, budget: &mut usize) -> Result<Vec<(String, PathBuf)>, String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        if *budget == 0 {
            return Err(format!(
                "the pattern reaches more than {MAX_ENTRIES} entries: make it narrower"
            ));
        }
        *budget -= 1;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(out)
}

/// `fnmatch` of one name: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| match_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && match_from(&p[1..], &n[1..]),
        Some('[') => match (class(&p[1..]), n.first()) {
            (Some((set_matches, len)), Some(c)) => {
                set_matches(*c) && match_from(&p[1 + len..], &n[1..])
            }
            (None, Some('[')) => match_from(&p[1..], &n[1..]),
            _ => false,
        },
        Some(c) => n.first() == Some(c) && match_from(&p[1..], &n[1..]),
    }
}

type ClassMatch = Box<dyn Fn(char) -> bool>;

/// A `[...]` class after its `[`: its test and its length including the closing `]`; `None`
/// when unclosed (then `[` is literal).
fn class(p: &[char]) -> Option<(ClassMatch, usize)> {
    let negated = matches!(p.first(), Some('!'));
    let start = usize::from(negated);
    // A `]` right after `[` or `[!` is a member.
    let close = p[start..]
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, c)| **c == ']')
        .map(|(i, _)| start + i)?;
    let members: Vec<char> = p[start..close].to_vec();
    let test = move |c: char| {
        let mut i = 0;
        let mut hit = false;
        while i < members.len() {
            if i + 2 < members.len() && members[i + 1] == '-' {
                hit |= members[i] <= c && c <= members[i + 2];
                i += 3;
            } else {
                hit |= members[i] == c;
                i += 1;
            }
        }
        hit != negated
    };
    Some((Box::new(test), close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_fnmatch() {
        assert!(matches("*.csv", "a.csv"));
        assert!(!matches("*.csv", "a.csv.tmp"));
        assert!(matches("part-?", "part-1"));
        assert!(!matches("part-?", "part-10"));
        assert!(matches("[ab]*", "beta"));
        assert!(!matches("[!ab]*", "beta"));
        assert!(matches("x[0-9]", "x7"));
        assert!(!matches("x[0-9]", "xa"));
        assert!(matches("[]]", "]"));
        assert!(matches("a[", "a["));
    }

    #[test]
    fn patterns_find_files_below_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        assert_eq!(first_match(&format!("{root}/*/ready")).unwrap(), None);
        std::fs::create_dir_all(dir.path().join("2024/01/.hidden")).unwrap();
        std::fs::write(dir.path().join("2024/01/.hidden/ready"), "").unwrap();
        assert_eq!(
            first_match(&format!("{root}/**/ready")).unwrap(),
            None,
            "hidden folders are not searched"
        );
        std::fs::write(dir.path().join("2024/01/ready"), "").unwrap();
        assert_eq!(
            first_match(&format!("{root}/**/ready")).unwrap(),
            Some(dir.path().join("2024/01/ready"))
        );
        assert_eq!(
            first_match(&format!("{root}/20*/0?/ready")).unwrap(),
            Some(dir.path().join("2024/01/ready"))
        );
        assert_eq!(
            first_match(&format!("{root}/2024/01/ready")).unwrap(),
            Some(dir.path().join("2024/01/ready"))
        );
        assert!(first_match("relative/path").is_err());
    }
}
