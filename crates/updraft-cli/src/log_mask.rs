//! updraft's own log lines, with every secret value the process has read replaced by `***`
//! (`updraft_secrets::mask::global`) before they reach standard error.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Standard error through the global masking set. The formatter writes each event in one
/// call, so a value is never split between writes.
#[derive(Clone, Copy)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedStderr
    }
}

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = masked(buf);
        std::io::stderr().write_all(masked.as_deref().unwrap_or(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `buf` masked, or `None` when nothing is to be masked.
fn masked(buf: &[u8]) -> Option<Vec<u8>> {
    let global = updraft_secrets::mask::global().read().ok()?;
    if global.is_empty() {
        return None;
    }
    Some(global.mask(&String::from_utf8_lossy(buf)).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_leave_log_lines_masked() {
        updraft_secrets::mask::register("pw-from-a-connection");
        let line = masked(b"connecting with pw-from-a-connection\n").unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), "connecting with ***\n");
    }
}
