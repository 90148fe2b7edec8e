//! Errors of the crash path. Each names the process, thread or file it is
//! about; the ones that did not prevent a dump end up in
//! `CrashCapture::soft_errors`.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use minidump_writer::minidump_writer::errors::WriterError;

use crate::process::procfs::ProcError;

/// What went wrong during a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("failed to read the {what} of crashing thread {tid}")]
    CrashState {
        tid: i32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("crash-context rejected a zeroed context for thread {tid} (layout mismatch)")]
    ContextLayout { tid: i32 },
    #[error("failed to list the threads of process {pid}")]
    ListThreads {
        pid: i32,
        #[source]
        source: ProcError,
    },
    #[error("failed to interrupt thread {tid} of process {pid}")]
    Interrupt {
        pid: i32,
        tid: i32,
        #[source]
        source: io::Error,
    },
    #[error("failed to wait for thread {tid} of process {pid}")]
    Wait {
        pid: i32,
        tid: i32,
        #[source]
        source: io::Error,
    },
    #[error("threads {tids:?} of process {pid} did not stop within {timeout:?}")]
    NotStopped { pid: i32, tids: Vec<i32>, timeout: Duration },
    #[error("failed to detach from thread {tid} of process {pid}")]
    Detach {
        pid: i32,
        tid: i32,
        #[source]
        source: io::Error,
    },
    #[error("failed to resume thread {tid} of process {pid}")]
    Resume {
        pid: i32,
        tid: i32,
        #[source]
        source: io::Error,
    },
    #[error("failed to re-queue signal {signal} to thread {tid} of process {pid}")]
    Requeue {
        pid: i32,
        tid: i32,
        signal: i32,
        #[source]
        source: io::Error,
    },
    #[error("failed to create dump file {path}")]
    CreateDump {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the minidump of process {pid} to {path}")]
    WriteDump {
        pid: i32,
        path: PathBuf,
        #[source]
        source: Box<WriterError>,
    },
    #[error("failed to save the minidump of process {pid} to {path}")]
    SaveDump {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("minidump-writer panicked while dumping process {pid} to {path}")]
    WriterPanicked { pid: i32, path: PathBuf },
    #[error("failed to read the mappings of process {pid}")]
    ReadMappings {
        pid: i32,
        #[source]
        source: ProcError,
    },
    #[error("failed to preserve deleted file {path} of process {pid}")]
    Preserve {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("deleted file {path} of process {pid} has {size} bytes, over the {limit}-byte limit")]
    PreserveTooLarge { pid: i32, path: PathBuf, size: u64, limit: u64 },
}
