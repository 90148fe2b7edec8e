//! Keeping the crash report a runtime wrote to a file of its own (the JVM's
//! `hs_err_pid<PID>.log`, whose path it prints in its fatal error header):
//! it holds every thread's mixed Java/native stack, the registers, the
//! memory map, the flags. The copy kept with the report is bounded; it is
//! scrubbed when sent, like the log tail.
//!
//! The path comes from the child's output, so it is not trusted: only a
//! regular file (not a symlink) named `hs_err_pid<PID>.log` for the pid
//! that crashed, written since the child started, is read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::report::{Attachment, CrashReport};
use crate::spool::Held;

/// The most of one file kept (hs_err logs are 50–200 KiB).
pub const MAX_BYTES: u64 = 2 << 20;

/// Keeps the file the report's runtime story names, if it passes the
/// checks above, in the held report's directory; a problem becomes a note
/// of the report.
pub fn keep(held: &Held, report: &mut CrashReport) {
    let Some(printed) = report.panic.as_ref().and_then(|p| p.report_file.clone()) else { return };
    match read(Path::new(&printed), report) {
        Ok((bytes, truncated)) => {
            let name = Path::new(&printed)
                .file_name()
                .map_or_else(|| "runtime.log".into(), |n| n.to_string_lossy().into_owned());
            let file = format!("attachments/{name}");
            match held.write(&file, &bytes) {
                Ok(()) => report.attachments.push(Attachment {
                    file,
                    name,
                    size: bytes.len() as u64,
                    original: printed.into(),
                    truncated,
                }),
                Err(e) => report.notes.push(format!("failed to keep {printed}: {}", crate::errors::Chain(&e))),
            }
        }
        Err(why) => report.notes.push(format!("{printed} is not attached: {why}")),
    }
}

/// The first [`MAX_BYTES`] of the file at `path` and whether there was more.
fn read(path: &Path, report: &CrashReport) -> Result<(Vec<u8>, bool), String> {
    let pids = [Some(report.program.pid), report.crash.as_ref().map(|c| c.dumped.pid)];
    let expected: Vec<String> = pids.iter().flatten().map(|pid| format!("hs_err_pid{pid}.log")).collect();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !path.is_absolute() || !expected.contains(&name) {
        return Err(format!("not an absolute path to {}", expected.join(" or ")));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    // A descendant's start is not known; its file is matched by pid alone.
    if report.started_at.is_some_and(|started| meta.mtime() < started.unix_timestamp()) {
        return Err("written before the program started".into());
    }
    let mut bytes = Vec::new();
    File::open(path).and_then(|f| f.take(MAX_BYTES).read_to_end(&mut bytes)).map_err(|e| e.to_string())?;
    let truncated = meta.len() > MAX_BYTES;
    if truncated {
        bytes.extend_from_slice(format!("\n[crashwatch: cut at {MAX_BYTES} of {} bytes]\n", meta.len()).as_bytes());
    }
    Ok((bytes, truncated))
}
