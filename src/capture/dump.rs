//! Step 7 of the crash path: minidump-writer on the stopped, untraced
//! process.

use std::fs::OpenOptions;
use std::panic::{self, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use minidump_writer::CrashContextExt;
use minidump_writer::crash_context::CrashContext;
use minidump_writer::minidump_writer::{DirectAuxvDumpInfo, MinidumpWriterConfig};

use super::{CaptureError, CaptureRequest, DumpFile};
use crate::capture::procfs;

/// Step 7: minidump-writer into a new file in the scratch directory.
pub(super) fn write_dump(req: &CaptureRequest<'_>, dump_pid: i32, ctx: CrashContext) -> Result<DumpFile, CaptureError> {
    let (tgid, tid) = (req.tgid, req.tid);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = req.scratch_dir.join(format!("crash-{tgid}-{tid}-{nanos}.dmp"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| CaptureError::CreateDump { path: path.clone(), source })?;

    let mut config = MinidumpWriterConfig::new(dump_pid, tid);
    config
        .set_crash_context(CrashContextExt { inner: ctx })
        // The process is already stopped; this only bounds its own wait.
        .stop_timeout(req.stop_timeout);
    if let Ok(auxv) = procfs::auxv(tid) {
        // Read through the live thread: with a zombie leader /proc/TGID/auxv
        // is empty.
        config.set_direct_auxv_dump_info(direct_auxv(&auxv));
    }

    // minidump-writer has unwrap()s on data read from the target; a panic
    // must cost this dump, not the supervisor. Its own Drop still detaches
    // and sends SIGCONT while unwinding.
    let written = panic::catch_unwind(AssertUnwindSafe(|| {
        // The in-memory copy it returns is not needed: the file has it all.
        config.write(&mut file).map(drop).map_err(Box::new)
    }));
    let result = match written {
        Ok(Ok(())) => file
            .metadata()
            .map(|m| DumpFile { path: path.clone(), size: m.len() })
            .map_err(|source| CaptureError::CreateDump { path: path.clone(), source }),
        Ok(Err(source)) => Err(CaptureError::WriteDump { pid: tgid, path: path.clone(), source }),
        Err(_) => Err(CaptureError::WriterPanicked { pid: tgid, path: path.clone() }),
    };
    if result.is_err() {
        // A half-written dump must not be mistaken for a real one.
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn direct_auxv(pairs: &[(u64, u64)]) -> DirectAuxvDumpInfo {
    let get = |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or(0);
    DirectAuxvDumpInfo {
        program_header_count: get(libc::AT_PHNUM),
        program_header_address: get(libc::AT_PHDR),
        linux_gate_address: get(libc::AT_SYSINFO_EHDR),
        entry_address: get(libc::AT_ENTRY),
    }
}
