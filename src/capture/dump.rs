//! Step 4 of the crash path (and the heart of a snapshot): minidump-writer
//! on a process whose every task we hold in a ptrace-stop, into memory; the
//! file is written after the process is let go (step 6). It must run on the
//! tracer thread: the kernel answers the register reads of a tracee only
//! from the thread that traces it.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use minidump_writer::CrashContextExt;
use minidump_writer::crash_context::CrashContext;
use minidump_writer::minidump_writer::{DirectAuxvDumpInfo, MinidumpWriterConfig};

use super::{CaptureError, DumpFile};
use crate::process::procfs;

/// What to dump and where.
pub(super) struct DumpTarget<'a> {
    /// `crash` or `snapshot`: the start of the file's name.
    pub kind: &'static str,
    pub tgid: i32,
    /// The thread the dump is about: the crashing one, or the one that took
    /// the snapshot request.
    pub tid: i32,
    /// The id minidump-writer addresses the process by (see the caller).
    pub dump_pid: i32,
    pub scratch_dir: &'a Path,
}

impl<'a> DumpTarget<'a> {
    /// The dump of thread `tid` of the stopped process `tgid`. A zombie
    /// leader (main thread called pthread_exit) has no mm, which breaks
    /// minidump-writer's /proc/PID reads: such a process is addressed
    /// through the live thread `tid`.
    pub fn new(kind: &'static str, tgid: i32, tid: i32, scratch_dir: &'a Path) -> Self {
        let leader_dead = procfs::task_state(tgid, tgid).is_ok_and(|s| s.is_dead());
        let dump_pid = if leader_dead { tid } else { tgid };
        DumpTarget { kind, tgid, tid, dump_pid, scratch_dir }
    }
}

/// A minidump taken into memory, with the file it is to be saved in (created
/// already, so that an unusable scratch directory fails before the dump).
pub(super) struct TakenDump {
    tgid: i32,
    bytes: Vec<u8>,
    file: File,
    partial: PathBuf,
    path: PathBuf,
}

/// minidump-writer into memory, while the process is held. With a crash
/// context, the dump's exception is the crash; without, it says
/// `DUMP_REQUESTED` and T's registers are read from its stop. The file is
/// written by [`TakenDump::save`], once the process has been let go: the
/// process waits for nothing but its own state to be read.
pub(super) fn take_dump(target: &DumpTarget<'_>, ctx: Option<CrashContext>) -> Result<TakenDump, CaptureError> {
    let DumpTarget { kind, tgid, tid, dump_pid, scratch_dir } = *target;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = scratch_dir.join(format!("{kind}-{tgid}-{tid}-{nanos}.dmp"));
    // Written under a name of its own and renamed when complete, so that a
    // dump found in the scratch directory after crashwatch was killed is a
    // whole one (see crate::spool).
    let partial = scratch_dir.join(format!("{kind}-{tgid}-{tid}-{nanos}.dmp.partial"));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|source| CaptureError::CreateDump { path: path.clone(), source })?;

    let mut config = MinidumpWriterConfig::new(dump_pid, tid);
    if let Some(ctx) = ctx {
        config.set_crash_context(CrashContextExt { inner: ctx });
    }
    // Every thread is in a ptrace-stop of ours (a thread that is not, a
    // laggard or a zombie leader, is left out of the dump): no SIGSTOP, no
    // attach, no SIGCONT.
    config.threads_stopped_by_caller();
    if let Ok(auxv) = procfs::auxv(tid) {
        // Read through the live thread: with a zombie leader /proc/TGID/auxv
        // is empty.
        config.set_direct_auxv_dump_info(direct_auxv(&auxv));
    }

    // minidump-writer has unwrap()s on data read from the target; a panic
    // must cost this dump, not the supervisor. The caller's Hold resumes
    // the threads whatever happens here.
    let written = panic::catch_unwind(AssertUnwindSafe(|| {
        // minidump-writer builds the whole dump in the buffer it returns and
        // copies it to its destination piece by piece as it goes: the buffer
        // is the file. A second copy would only cost time while the process
        // is held, so the destination discards.
        config.write(&mut Discard::default()).map_err(Box::new)
    }));
    let result = match written {
        Ok(Ok(bytes)) => Ok(TakenDump { tgid, bytes, file, partial: partial.clone(), path }),
        Ok(Err(source)) => Err(CaptureError::WriteDump { pid: tgid, path, source }),
        Err(_) => Err(CaptureError::WriterPanicked { pid: tgid, path }),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

impl TakenDump {
    /// Writes the dump to its file and gives it its final name.
    pub(super) fn save(self) -> Result<DumpFile, CaptureError> {
        let TakenDump { tgid, bytes, mut file, partial, path } = self;
        let saved = file.write_all(&bytes).and_then(|()| std::fs::rename(&partial, &path));
        match saved {
            Ok(()) => Ok(DumpFile { path, size: bytes.len() as u64 }),
            Err(source) => {
                // A half-written dump must not be mistaken for a real one.
                let _ = std::fs::remove_file(&partial);
                Err(CaptureError::SaveDump { pid: tgid, path, source })
            }
        }
    }
}

/// A `Write + Seek` destination that keeps nothing but its position and
/// length, as minidump-writer's file writes need.
#[derive(Default)]
struct Discard {
    pos: u64,
    len: u64,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
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
