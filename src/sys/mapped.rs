//! Read-only memory maps of the ELF and debug files symbols are read from.
//!
//! Symbolication reads a few KB out of files of tens or hundreds of MB: the
//! symbol-table entries and names near each address, the line programs and
//! strings of a few compilation units. Mapping the file makes only what is
//! touched resident, and gimli and addr2line read the sections in place;
//! reading them in would pay for whole sections (copying them is much of
//! what made the wholesym-based lookup as costly as minidump-stackwalk).
//!
//! A touched page brings the whole page-cache folio around it (64 KiB or
//! more on current kernels, whatever `madvise` says) into this process's
//! resident set, so work that visits one spot in each of thousands of
//! places (every compilation unit's first entry) reads with `pread`
//! ([`Mapped::read_at`]) instead.
//!
//! The one hazard of a mapping is a file truncated while it is mapped: a
//! read past the new end raises `SIGBUS`. Symbolication runs in a
//! short-lived helper process (`crashwatch symbolicate --json`), never in
//! the supervisor, and that process already maps the same files for the
//! CFI unwinder (minidump-unwind's framehop provider maps every module), so
//! this adds no new way to die. The files are binaries and debug files
//! whose build-id was just checked: nobody is expected to write into them.

use std::fs::File;
use std::io;
use std::path::Path;

/// A whole file mapped read-only, and the open file for reads that should
/// not go through the mapping.
pub struct Mapped {
    map: memmap2::Mmap,
    file: File,
}

impl Mapped {
    pub fn open(path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        // SAFETY: the mapping is private and read-only, and the bytes are
        // only ever read through `&[u8]`. Its contents could change under
        // us only if another process rewrote or truncated the file; see the
        // module documentation for why that is accepted here.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped { map, file })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Fills `buffer` from `offset` with `pread`. A page touched through
    /// the mapping costs this process the whole page-cache folio around it
    /// (often 64 KiB or more on current kernels, whatever `madvise` says);
    /// scattered reads of a few bytes each, like the first entry of every
    /// compilation unit, are cheaper this way.
    pub fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        self.file.read_exact_at(buffer, offset)
    }
}
