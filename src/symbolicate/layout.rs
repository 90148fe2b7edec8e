//! Where a module's file is loaded: which address its symbols' addresses
//! are relative to.
//!
//! A dump's module record starts at the lowest address of one run of
//! mappings of a file, and the processor takes that for the file's load
//! address. It is not always so: `node` is mapped with a gap between its
//! segments, so minidump-writer records it as several modules, one of which
//! starts at its `.text` segment; and V8 maps part of that file a second
//! time elsewhere (its embedded builtins, run from a copy near the heap).
//! Taking the record's start for the load address shifts every address of
//! such a record: a frame in `Runtime_NewArray` was named after an
//! unrelated function 0x772000 bytes away.
//!
//! The dump's Linux maps stream gives the file offset each record's first
//! mapping starts at; the file's program headers give the virtual address
//! of that offset; the difference is the load bias, which holds for every
//! address of the record.

use std::fs::File;
use std::path::Path;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind, ReadCache};

/// The page size mappings are aligned to (x86_64 and the usual arm64).
const PAGE: u64 = 4096;

/// The address at which `path`'s first `PT_LOAD` segment's virtual address
/// is (or would be) mapped, when the record starting at `record_base` maps
/// the file from `file_offset`. `None` when the offset lies in no loaded
/// segment or the file cannot be read.
pub(crate) fn image_base(path: &Path, record_base: u64, file_offset: u64) -> Option<u64> {
    let cache = ReadCache::new(File::open(path).ok()?);
    match FileKind::parse(&cache).ok()? {
        FileKind::Elf64 => elf_image_base::<elf::FileHeader64<Endianness>>(&cache, record_base, file_offset),
        FileKind::Elf32 => elf_image_base::<elf::FileHeader32<Endianness>>(&cache, record_base, file_offset),
        _ => None,
    }
}

fn elf_image_base<Elf: FileHeader<Endian = Endianness>>(
    data: &ReadCache<File>,
    record_base: u64,
    file_offset: u64,
) -> Option<u64> {
    let (first_vaddr, loads) = loads::<Elf>(data)?;
    // A segment is mapped from its page-aligned offset (one page may hold
    // the end of a segment and the start of the next: the mapping that
    // starts there is the next one's); a mapping that starts further in
    // is part of one (split by mprotect, as RELRO is).
    let page = |offset: u64| offset - offset % PAGE;
    let &(vaddr, offset, _) = loads.iter().find(|&&(_, offset, _)| page(offset) == file_offset).or_else(|| {
        loads.iter().find(|&&(_, offset, size)| (page(offset)..offset.saturating_add(size)).contains(&file_offset))
    })?;
    let vaddr_at_record = vaddr.checked_add(file_offset)?.checked_sub(offset)?;
    record_base.checked_sub(vaddr_at_record)?.checked_add(first_vaddr)
}

/// Reads `buffer.len()` bytes of the file at `path` that are mapped at
/// `address` when its first segment is at `image_base` (code the dump does
/// not hold). `None` when they lie outside the file's loaded bytes.
pub(crate) fn read_mapped(path: &Path, image_base: u64, address: u64, buffer: &mut [u8]) -> Option<()> {
    use object::ReadRef;
    let cache = ReadCache::new(File::open(path).ok()?);
    let (first_vaddr, segments) = match FileKind::parse(&cache).ok()? {
        FileKind::Elf64 => loads::<elf::FileHeader64<Endianness>>(&cache)?,
        FileKind::Elf32 => loads::<elf::FileHeader32<Endianness>>(&cache)?,
        _ => return None,
    };
    let vaddr = address.checked_sub(image_base)?.checked_add(first_vaddr)?;
    let len = buffer.len() as u64;
    let &(seg_vaddr, offset, _) = segments
        .iter()
        .find(|&&(v, _, size)| v <= vaddr && vaddr.checked_add(len).is_some_and(|end| end <= v + size))?;
    let bytes = cache.read_bytes_at(offset.checked_add(vaddr - seg_vaddr)?, len).ok()?;
    buffer.copy_from_slice(bytes);
    Some(())
}

/// `(vaddr, offset, filesz)` of a `PT_LOAD` segment.
type Load = (u64, u64, u64);

/// The first `PT_LOAD`'s address and every `PT_LOAD`.
fn loads<Elf: FileHeader<Endian = Endianness>>(data: &ReadCache<File>) -> Option<(u64, Vec<Load>)> {
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let loads: Vec<Load> = header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| (p.p_vaddr(endian).into(), p.p_offset(endian).into(), p.p_filesz(endian).into()))
        .collect();
    Some((loads.first()?.0, loads))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary, as the kernel mapped it: each mapping of it gives
    /// the same image base, the address of its first segment.
    #[test]
    fn every_mapping_of_a_file_gives_its_image_base() {
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mine: Vec<(u64, u64)> = maps
            .lines()
            .filter(|l| l.ends_with(&*exe.to_string_lossy()))
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let start = u64::from_str_radix(fields[0].split('-').next().unwrap(), 16).unwrap();
                (start, u64::from_str_radix(fields[2], 16).unwrap())
            })
            .collect();
        assert!(mine.len() >= 2, "{maps}");
        let first = mine[0].0;
        for (start, offset) in mine {
            assert_eq!(image_base(&exe, start, offset), Some(first), "mapping at {start:#x} offset {offset:#x}");
        }
        assert_eq!(image_base(&exe, first, u64::MAX / 2), None);
    }
}
