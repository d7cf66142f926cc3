//! The lines around an import error, read without leaving the DAGs folder: [`excerpt`].
//!
//! What is shown next to an error must obey the same rules as the walk: the file is resolved
//! (links included) and read only if it lies inside the DAGs folder and is a regular file of
//! bounded size; lines are cut and their control and bidirectional characters escaped. Any
//! doubt gives no excerpt rather than an error.

use std::io::Read as _;
use std::path::{Component, Path};

use crate::walk::{self, escape_name};

/// Longest file an excerpt is read from.
pub const MAX_EXCERPT_FILE: u64 = 1 << 20;
/// Longest line shown in an excerpt, in characters; longer ones are cut.
pub const MAX_EXCERPT_LINE_CHARS: usize = 200;

/// One line of an [`excerpt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcerptLine {
    /// 1-based.
    pub number: u32,
    pub text: String,
}

/// Lines `line - context ..= line + context` of `filename` (relative to `root`, `/`-separated),
/// or nothing when the file is not a regular file inside `root` of at most
/// [`MAX_EXCERPT_FILE`] bytes. Blocking: call it where file reads may block.
pub fn excerpt(root: &Path, filename: &str, line: u32, context: u32) -> Vec<ExcerptLine> {
    read_inside(root, filename)
        .map(|text| lines_around(&text, line, context))
        .unwrap_or_default()
}

fn read_inside(root: &Path, filename: &str) -> Option<String> {
    let relative = Path::new(filename);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !plain || filename.is_empty() {
        return None;
    }
    let root = std::fs::canonicalize(root).ok()?;
    let real = std::fs::canonicalize(root.join(relative)).ok()?;
    if !real.starts_with(&root) {
        return None;
    }
    let (file, meta) = walk::open_regular(&real, None).ok()?;
    if meta.len() > MAX_EXCERPT_FILE {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_EXCERPT_FILE).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn lines_around(text: &str, line: u32, context: u32) -> Vec<ExcerptLine> {
    let first = line.saturating_sub(context).max(1);
    let last = line.saturating_add(context);
    text.lines()
        .zip(1u32..)
        .skip_while(|(_, n)| *n < first)
        .take_while(|(_, n)| *n <= last)
        .map(|(text, number)| ExcerptLine {
            number,
            text: shown(text),
        })
        .collect()
}

fn shown(line: &str) -> String {
    let mut out: String = line.chars().take(MAX_EXCERPT_LINE_CHARS).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    escape_name(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_and_escaped() {
        let text = format!("a\nb\u{202e}\n{}\nd\ne\n", "x".repeat(1000));
        let lines = lines_around(&text, 3, 1);
        assert_eq!(
            lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(lines[0].text, "b\\u{202e}");
        assert_eq!(lines[1].text.chars().count(), MAX_EXCERPT_LINE_CHARS + 1);
        assert!(lines_around("a\n", 1, 3).len() == 1);
    }
}
