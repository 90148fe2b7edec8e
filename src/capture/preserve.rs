//! Keeping deleted executables and libraries of a crashed process.
//!
//! A deploy that replaces a binary while the old one runs leaves the running
//! process mapping a file with no name (`/proc/PID/maps` shows
//! `path (deleted)`). Symbolication later opens the path recorded in the dump
//! and would read the *new* binary: wrong symbols, silently. The old inode is
//! still reachable through `/proc/PID/map_files/START-END` for as long as the
//! process lives.
//!
//! Two phases, so the process is not kept stopped while megabytes are copied:
//! 1. [`open_deleted`] runs inside the dump window (process stopped) and only
//!    *opens* each file; the open descriptor pins the inode.
//! 2. [`copy_all`] runs after the process was released and may already be
//!    dead: the descriptors still read the old contents.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::{CaptureError, PreservedMapping};
use crate::process::procfs::{self, DeletedMapping};

/// Files larger than this are not copied (reported as a soft error): a huge
/// deleted mapping is more likely data than code, and copying it would fill
/// the scratch directory.
pub const MAX_PRESERVE_BYTES: u64 = 1 << 30;

/// A deleted file, opened while its process was still alive.
#[derive(Debug)]
pub struct OpenDeleted {
    mapping: DeletedMapping,
    /// Lowest start address of the file's mappings (its load address).
    base_address: u64,
    file: File,
}

/// Opens every deleted file that has at least one executable mapping in the
/// process `tgid`, read through its live thread `tid`.
///
/// A file maps several times (one line per segment); any of its
/// `map_files` entries opens the whole file, so each `(dev, inode)` is opened
/// once. Returns what could be opened and one soft error per failure.
pub fn open_deleted(tgid: i32, tid: i32) -> (Vec<OpenDeleted>, Vec<CaptureError>) {
    let mut errors = Vec::new();
    let mappings = match procfs::deleted_mappings(tid) {
        Ok(m) => m,
        Err(source) => {
            errors.push(CaptureError::ReadMappings { pid: tgid, source });
            return (Vec::new(), errors);
        }
    };

    let mut by_file: BTreeMap<(String, u64), Vec<DeletedMapping>> = BTreeMap::new();
    for m in mappings {
        by_file.entry((m.dev.clone(), m.inode)).or_default().push(m);
    }

    let mut opened = Vec::new();
    for group in by_file.into_values() {
        if !group.iter().any(DeletedMapping::is_executable) {
            continue;
        }
        let base_address = group.iter().map(|m| m.start).min().unwrap_or_default();
        let Some(first) = group.into_iter().next() else {
            continue;
        };
        let entry = procfs::map_file_path(tid, &first);
        match File::open(&entry) {
            Ok(file) => opened.push(OpenDeleted { mapping: first, base_address, file }),
            Err(source) => errors.push(CaptureError::Preserve { pid: tgid, path: first.path.clone(), source }),
        }
    }
    (opened, errors)
}

/// Copies the opened files into `dir` as `TGID-INODE-NAME`.
pub fn copy_all(tgid: i32, opened: Vec<OpenDeleted>, dir: &Path) -> (Vec<PreservedMapping>, Vec<CaptureError>) {
    let mut preserved = Vec::new();
    let mut errors = Vec::new();
    for open in opened {
        match copy_one(tgid, &open, dir) {
            Ok(p) => preserved.push(p),
            Err(e) => errors.push(e),
        }
    }
    (preserved, errors)
}

fn copy_one(tgid: i32, open: &OpenDeleted, dir: &Path) -> Result<PreservedMapping, CaptureError> {
    let original = &open.mapping.path;
    let preserve_err = |source: io::Error| CaptureError::Preserve { pid: tgid, path: original.clone(), source };
    let size = open.file.metadata().map_err(preserve_err)?.len();
    if size > MAX_PRESERVE_BYTES {
        return Err(CaptureError::PreserveTooLarge {
            pid: tgid,
            path: original.clone(),
            size,
            limit: MAX_PRESERVE_BYTES,
        });
    }
    let name = original.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "unnamed".to_owned());
    let dest: PathBuf = dir.join(format!("{tgid}-{}-{name}", open.mapping.inode));
    // Renamed when whole, like the dump: a copy found after crashwatch was
    // killed is a complete one.
    let partial: PathBuf = dir.join(format!("{tgid}-{}-{name}.partial", open.mapping.inode));
    let mut out = OpenOptions::new().write(true).create_new(true).open(&partial).map_err(preserve_err)?;
    // `&File` implements Read; std uses copy_file_range/sendfile underneath.
    let mut src = &open.file;
    let copied = io::copy(&mut src, &mut out).and_then(|n| std::fs::rename(&partial, &dest).map(|()| n));
    let copied = copied.inspect_err(|_| drop(std::fs::remove_file(&partial))).map_err(preserve_err)?;
    Ok(PreservedMapping {
        original_path: original.clone(),
        preserved_path: dest,
        size: copied,
        inode: open.mapping.inode,
        base_address: open.base_address,
    })
}
