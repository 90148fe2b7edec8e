//! The copy of a minidump that leaves the host, without the secrets its
//! Linux streams carry.
//!
//! minidump-writer copies `/proc/PID/environ` (`LinuxEnviron`, 0x47670007)
//! and `/proc/PID/cmdline` (`LinuxCmdLine`, 0x47670006) into the dump, and
//! the main thread's stack, dumped up to the top of its mapping, holds the
//! same strings where the kernel put them at exec. The copy sent with a
//! report therefore has:
//!
//! * its environ stream reduced to `NAME=[Filtered]` entries, and its
//!   command line scrubbed argument by argument with the event's patterns
//!   ([`Scrubber::scrub`], so both say the same). The new streams are
//!   appended after the file's end and their directory entries pointed at
//!   them; the old bytes are zeroed. Nothing else moves.
//! * in every dumped memory region (the memory list and the thread stacks),
//!   wherever the environment or the command line block appears, every
//!   variable's value and each secret of the command line overwritten with
//!   `*`, length for length: memory cannot change size without breaking the
//!   addresses the stack walk follows.
//! * any other copy in that memory of a secret the patterns found in a
//!   variable or an argument (four bytes or more) overwritten the same way.
//!
//! The dump in the spool is never changed: the result is a [`Rewrite`]
//! applied while the envelope is written. Other memory (what a program
//! copied into its own buffers on a stack) is not searched beyond that.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::sentry::envelope::Rewrite;
use crate::sentry::scrub::{FILTERED, Scrubber};

/// `MDMP`, little-endian.
const SIGNATURE: u32 = 0x504d_444d;
const HEADER_LEN: usize = 32;
const DIRENT_LEN: u64 = 12;
const THREAD_LIST: u32 = 3;
const MEMORY_LIST: u32 = 5;
const LINUX_CMD_LINE: u32 = 0x4767_0006;
const LINUX_ENVIRON: u32 = 0x4767_0007;
/// A `MINIDUMP_THREAD` is 48 bytes; its stack descriptor starts at 24.
const THREAD_LEN: u64 = 48;
const THREAD_STACK_AT: u64 = 24;
const MEMORY_DESCRIPTOR_LEN: u64 = 16;
/// More streams, threads or regions than any dump minidump-writer makes:
/// a count past this is a corrupt file, not work to do.
const MAX_COUNT: u32 = 1 << 20;
/// What a secret's bytes become in memory.
const MASK: u8 = b'*';
/// Shorter secrets are not searched for across memory: too many false hits.
const MIN_SEARCHED_SECRET: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("failed to read the minidump {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the minidump {path} is malformed: {what}")]
    Malformed { path: PathBuf, what: &'static str },
}

/// The changes that take the secrets out of the minidump at `path`.
pub fn scrub(path: &Path, scrubber: &Scrubber) -> Result<Rewrite, ScrubError> {
    let dump = Dump::open(path)?;
    let streams = dump.directory()?;
    let mut rewrite = Rewrite::default();
    let mut appended_at = dump.len.next_multiple_of(4);
    let mut zeroed = Vec::new();
    let mut blocks: Vec<(Vec<u8>, Vec<Range<usize>>)> = Vec::new();
    let mut secrets: Vec<Vec<u8>> = Vec::new();

    for (index, stream) in streams.iter().enumerate() {
        let scrubbed = match stream.ty {
            LINUX_ENVIRON => scrub_environ(&dump.read(stream.rva, stream.size)?, scrubber),
            LINUX_CMD_LINE => scrub_cmdline(&dump.read(stream.rva, stream.size)?, scrubber),
            _ => continue,
        };
        let Scrubbed { block, replacement, masked, secrets: found } = scrubbed;
        secrets.extend(found);
        if replacement != block {
            let padding = usize::try_from(appended_at - dump.len).unwrap_or(0) - rewrite.appended.len();
            rewrite.appended.resize(rewrite.appended.len() + padding, 0);
            let (Ok(rva), Ok(size)) = (u32::try_from(appended_at), u32::try_from(replacement.len())) else {
                return Err(dump.malformed("too large to append the scrubbed streams to"));
            };
            let mut entry = size.to_le_bytes().to_vec();
            entry.extend_from_slice(&rva.to_le_bytes());
            rewrite.patches.push((dump.dir_rva + index as u64 * DIRENT_LEN + 4, entry));
            zeroed.push(u64::from(stream.rva)..u64::from(stream.rva) + u64::from(stream.size));
            appended_at += replacement.len() as u64;
            rewrite.appended.extend_from_slice(&replacement);
            appended_at = appended_at.next_multiple_of(4);
        }
        if !block.is_empty() && !masked.is_empty() {
            blocks.push((block, masked));
        }
    }
    secrets.retain(|s| s.len() >= MIN_SEARCHED_SECRET);
    secrets.sort();
    secrets.dedup();

    let mut masks = Vec::new();
    for region in dump.memory_regions(&streams)? {
        let bytes = dump.read(region.rva, region.size)?;
        for (block, masked) in &blocks {
            for at in memchr::memmem::find_iter(&bytes, block) {
                masks.extend(masked.iter().map(|r| region.offset(at + r.start)..region.offset(at + r.end)));
            }
        }
        for secret in &secrets {
            for at in memchr::memmem::find_iter(&bytes, secret) {
                masks.push(region.offset(at)..region.offset(at + secret.len()));
            }
        }
    }
    let mut patches: Vec<(u64, Vec<u8>)> = merge(masks).into_iter().map(|r| (r.start, fill(&r, MASK))).collect();
    patches.extend(merge(zeroed).into_iter().map(|r| (r.start, fill(&r, 0))));
    patches.append(&mut rewrite.patches);
    rewrite.patches = without_overlaps(patches);
    Ok(rewrite)
}

/// A text stream, its replacement, the byte ranges of it to mask where it
/// appears in memory, and the secrets in it worth looking for elsewhere.
struct Scrubbed {
    block: Vec<u8>,
    replacement: Vec<u8>,
    masked: Vec<Range<usize>>,
    secrets: Vec<Vec<u8>>,
}

/// `NAME=VALUE\0…` → `NAME=[Filtered]\0…`; every value is masked.
fn scrub_environ(block: &[u8], scrubber: &Scrubber) -> Scrubbed {
    let mut replacement = Vec::with_capacity(block.len());
    let mut masked = Vec::new();
    let mut secrets = Vec::new();
    for (start, entry) in entries(block) {
        match entry.iter().position(|&b| b == b'=') {
            Some(eq) => {
                replacement.extend_from_slice(&entry[..=eq]);
                masked.push(start + eq + 1..start + entry.len());
            }
            None => masked.push(start..start + entry.len()),
        }
        replacement.extend_from_slice(FILTERED.as_bytes());
        replacement.push(0);
        let text = String::from_utf8_lossy(entry);
        secrets.extend(scrubber.secret_ranges(&text).into_iter().map(|r| text.as_bytes()[r].to_vec()));
    }
    masked.retain(|r| !r.is_empty());
    Scrubbed { block: block.to_vec(), replacement, masked, secrets }
}

/// Each argument as the event's `argv` is scrubbed; in memory its secret
/// parts are masked (all of an argument that is not UTF-8 and had one).
fn scrub_cmdline(block: &[u8], scrubber: &Scrubber) -> Scrubbed {
    let mut replacement = Vec::with_capacity(block.len());
    let mut masked = Vec::new();
    let mut secrets = Vec::new();
    let mut first = true;
    for (start, arg) in block.split(|&b| b == 0).scan(0, |at, arg| {
        let start = *at;
        *at += arg.len() + 1;
        Some((start, arg))
    }) {
        if !first {
            replacement.push(0);
        }
        first = false;
        match std::str::from_utf8(arg) {
            Ok(text) => {
                replacement.extend_from_slice(scrubber.scrub(text).as_bytes());
                for range in scrubber.secret_ranges(text) {
                    secrets.push(arg[range.clone()].to_vec());
                    masked.push(start + range.start..start + range.end);
                }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(arg);
                let clean = scrubber.scrub(&text);
                if clean != text {
                    masked.push(start..start + arg.len());
                    replacement.extend_from_slice(clean.as_bytes());
                } else {
                    replacement.extend_from_slice(arg);
                }
            }
        }
    }
    Scrubbed { block: block.to_vec(), replacement, masked, secrets }
}

/// The non-empty NUL-terminated entries of `block` with their offsets.
fn entries(block: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    block
        .split(|&b| b == 0)
        .scan(0, |at, entry| {
            let start = *at;
            *at += entry.len() + 1;
            Some((start, entry))
        })
        .filter(|(_, entry)| !entry.is_empty())
}

fn fill(range: &Range<u64>, byte: u8) -> Vec<u8> {
    vec![byte; usize::try_from(range.end - range.start).unwrap_or(0)]
}

/// Sorted, with overlapping and touching ranges joined.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// Sorted by offset, overlapping patches joined into one (the later one's
/// bytes win where they overlap). Only a dump whose streams overlap its
/// memory, which no writer makes, has any.
fn without_overlaps(mut patches: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    patches.sort_by_key(|(offset, _)| *offset);
    let mut out: Vec<(u64, Vec<u8>)> = Vec::with_capacity(patches.len());
    for (offset, bytes) in patches {
        if let Some((last_offset, last)) = out.last_mut() {
            let last_end = *last_offset + last.len() as u64;
            if offset < last_end {
                let end = last_end.max(offset + bytes.len() as u64);
                last.resize(usize::try_from(end - *last_offset).unwrap_or(0), 0);
                let at = usize::try_from(offset - *last_offset).unwrap_or(0);
                last[at..at + bytes.len()].copy_from_slice(&bytes);
                continue;
            }
        }
        out.push((offset, bytes));
    }
    out
}

struct Dump {
    path: PathBuf,
    file: File,
    len: u64,
    dir_rva: u64,
    stream_count: u32,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    ty: u32,
    size: u32,
    rva: u32,
}

/// A dumped memory region: where its bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Region {
    rva: u32,
    size: u32,
}

impl Region {
    fn offset(&self, at: usize) -> u64 {
        u64::from(self.rva) + at as u64
    }
}

impl Dump {
    fn open(path: &Path) -> Result<Dump, ScrubError> {
        let read_err = |source| ScrubError::Read { path: path.to_owned(), source };
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut dump = Dump { path: path.to_owned(), file, len, dir_rva: 0, stream_count: 0 };
        let header = dump.read(0u64, HEADER_LEN as u32)?;
        if u32_at(&header, 0) != SIGNATURE {
            return Err(dump.malformed("no MDMP signature"));
        }
        dump.stream_count = u32_at(&header, 8);
        dump.dir_rva = u64::from(u32_at(&header, 12));
        if dump.stream_count > MAX_COUNT {
            return Err(dump.malformed("implausible stream count"));
        }
        Ok(dump)
    }

    fn malformed(&self, what: &'static str) -> ScrubError {
        ScrubError::Malformed { path: self.path.clone(), what }
    }

    /// `size` bytes at `rva`, which must lie within the file.
    fn read(&self, rva: impl Into<u64>, size: u32) -> Result<Vec<u8>, ScrubError> {
        let rva = rva.into();
        if rva.checked_add(u64::from(size)).is_none_or(|end| end > self.len) {
            return Err(self.malformed("a stream or region lies past the end of the file"));
        }
        let mut bytes = vec![0; size as usize];
        self.file
            .read_exact_at(&mut bytes, rva)
            .map_err(|source| ScrubError::Read { path: self.path.clone(), source })?;
        Ok(bytes)
    }

    fn directory(&self) -> Result<Vec<Stream>, ScrubError> {
        let bytes = self.read(self.dir_rva, self.stream_count * DIRENT_LEN as u32)?;
        Ok(bytes
            .chunks_exact(DIRENT_LEN as usize)
            .map(|e| Stream { ty: u32_at(e, 0), size: u32_at(e, 4), rva: u32_at(e, 8) })
            .collect())
    }

    /// The memory list's regions and the thread stacks, each once.
    fn memory_regions(&self, streams: &[Stream]) -> Result<Vec<Region>, ScrubError> {
        let mut regions = Vec::new();
        for stream in streams {
            let (entry_len, descriptor_at) = match stream.ty {
                MEMORY_LIST => (MEMORY_DESCRIPTOR_LEN, 0),
                THREAD_LIST => (THREAD_LEN, THREAD_STACK_AT),
                _ => continue,
            };
            if stream.size < 4 {
                continue;
            }
            let count = u32_at(&self.read(stream.rva, 4)?, 0);
            if count > MAX_COUNT || u64::from(count) * entry_len + 4 > u64::from(stream.size) {
                return Err(self.malformed("a memory or thread list is longer than its stream"));
            }
            let list = self.read(u64::from(stream.rva) + 4, count * entry_len as u32)?;
            for entry in list.chunks_exact(entry_len as usize) {
                let at = descriptor_at as usize + 8;
                regions.push(Region { size: u32_at(entry, at), rva: u32_at(entry, at + 4) });
            }
        }
        regions.retain(|r| r.size > 0);
        regions.sort();
        regions.dedup();
        Ok(regions)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(&[]).unwrap()
    }

    #[test]
    fn environ_keeps_names_and_masks_every_value() {
        let block = b"PATH=/usr/bin\0DB_PASSWORD=hunter2xyz\0EMPTY=\0\0";
        let s = scrub_environ(block, &scrubber());
        assert_eq!(s.replacement, b"PATH=[Filtered]\0DB_PASSWORD=[Filtered]\0EMPTY=[Filtered]\0");
        let masked: Vec<&[u8]> = s.masked.iter().map(|r| &block[r.clone()]).collect();
        assert_eq!(masked, [&b"/usr/bin"[..], b"hunter2xyz"]);
        assert_eq!(s.secrets, [b"hunter2xyz".to_vec()]);
    }

    #[test]
    fn cmdline_is_scrubbed_like_the_events_argv() {
        let block = b"./server\0--password=s3cr3tpw\0--port\08080\0";
        let s = scrub_cmdline(block, &scrubber());
        assert_eq!(s.replacement, b"./server\0--password=[Filtered]\0--port\08080\0");
        let masked: Vec<&[u8]> = s.masked.iter().map(|r| &block[r.clone()]).collect();
        assert_eq!(masked, [&b"s3cr3tpw"[..]]);
        let plain = scrub_cmdline(b"./server\0--port\0", &scrubber());
        assert_eq!(plain.replacement, plain.block);
        assert!(plain.masked.is_empty());
    }

    #[test]
    fn a_file_that_is_no_minidump_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump");
        let mut header = b"MDMP\x93\xa7\0\0".to_vec();
        header.extend_from_slice(&3u32.to_le_bytes()); // three streams…
        header.extend_from_slice(&4096u32.to_le_bytes()); // …past the end
        header.resize(HEADER_LEN, 0);
        for (bytes, expected) in [
            (&b"ELF"[..], "past the end"),
            (b"\x7fELF and more bytes than a header has", "no MDMP"),
            (&header[..], "past the end"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let e = scrub(&path, &scrubber()).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn overlapping_patches_become_one() {
        let patches = vec![(10, vec![1; 4]), (0, vec![2; 3]), (12, vec![3; 4])];
        assert_eq!(without_overlaps(patches), [(0, vec![2; 3]), (10, vec![1, 1, 3, 3, 3, 3])]);
        assert_eq!(merge(vec![5..7, 1..3, 3..4, 6..9]), [1..4, 5..9]);
    }
}
