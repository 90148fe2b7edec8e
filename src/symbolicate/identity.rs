//! Which file on this host really is the module the dump recorded.
//!
//! A dump records each module's path and its identifier (the ELF build-id,
//! or for files without one minidump-writer's XOR of the first page of
//! `.text`). The path alone proves nothing: a deploy that replaced the
//! binary leaves a *different* file there, and reading its DWARF or CFI would
//! give plausible, wrong names and stacks. So every module's file is read
//! just far enough to compute the same identifier (program and section
//! headers, notes, at most one page of `.text`: a few KB, never the DWARF)
//! and used only if it matches. A preserved copy of the original (e.g. the
//! one the capture stage copied out of `/proc/PID/map_files` when the file
//! had been deleted) is checked the same way, first.
//!
//! Files are read through `object::ReadCache` (plain `read` calls, only the
//! ranges asked for) rather than mapped: this runs for every module of the
//! dump, most of which are never symbolicated, and a file truncated while
//! mapped would kill this process with `SIGBUS` (see `mapped.rs` for the
//! files that are mapped, and why that is accepted there).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, FileKind, ReadCache, ReadRef};

/// Bytes of `.text` that minidump-writer hashes when a file has no build-id
/// (it assumes 4 KiB pages; so must we, to get the same identifier).
const TEXT_HASH_BYTES: u64 = 4096;
/// Size of the hashed identifier (a GUID).
const TEXT_HASH_LEN: usize = 16;

/// Where a module's own file was found, or why none can be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Located {
    /// A file whose identifier matches the dump's.
    pub file: Option<PathBuf>,
    /// Why `file` is `None` (or what was wrong with the path in the dump).
    pub problem: Option<String>,
}

/// Why a file's identifier could not be computed.
#[derive(Debug)]
pub enum IdentityError {
    Missing,
    Io(io::Error),
    /// Not ELF, or malformed headers.
    Parse(String),
    /// ELF, but neither a build-id note nor an executable section.
    NoIdentifier,
}

impl IdentityError {
    pub fn describe(&self, path: &Path) -> String {
        match self {
            IdentityError::Missing => format!("file not found: {}", path.display()),
            IdentityError::Io(e) => format!("cannot read {}: {e}", path.display()),
            IdentityError::Parse(e) => format!("not a usable ELF file: {}: {e}", path.display()),
            IdentityError::NoIdentifier => {
                format!("no build-id and no .text section in {}", path.display())
            }
        }
    }
}

/// Computes a file's identifier exactly as minidump-writer does for a mapped
/// module: the `NT_GNU_BUILD_ID` note from the program headers, else from a
/// note section, else the XOR-fold of the first page of the first
/// allocated executable `PROGBITS` section.
pub(crate) fn file_identifier(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => IdentityError::Missing,
        _ => IdentityError::Io(e),
    })?;
    let cache = ReadCache::new(file);
    let kind = FileKind::parse(&cache).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let id = match kind {
        FileKind::Elf64 => elf_identifier::<elf::FileHeader64<Endianness>, _>(&cache),
        FileKind::Elf32 => elf_identifier::<elf::FileHeader32<Endianness>, _>(&cache),
        other => return Err(IdentityError::Parse(format!("{other:?} file"))),
    };
    id.map_err(IdentityError::Parse)?.ok_or(IdentityError::NoIdentifier)
}

fn elf_identifier<'data, Elf, R>(data: R) -> Result<Option<Vec<u8>>, String>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;

    // Malformed notes in one place must not hide a good note in the other
    // (objcopy --only-keep-debug files keep PT_NOTE headers whose offsets
    // no longer point at the notes), so errors here only end that search.
    if let Ok(segments) = header.program_headers(endian, data) {
        for segment in segments {
            if let Ok(Some(notes)) = segment.notes(endian, data)
                && let Some(id) = find_build_id(notes, endian)
            {
                return Ok(Some(id));
            }
        }
    }
    let sections = header.sections(endian, data).map_err(|e| e.to_string())?;
    for section in sections.iter() {
        if let Ok(Some(notes)) = section.notes(endian, data)
            && let Some(id) = find_build_id(notes, endian)
        {
            return Ok(Some(id));
        }
    }
    for section in sections.iter() {
        let flags = section.sh_flags(endian);
        if section.sh_type(endian) == elf::SHT_PROGBITS
            && flags.contains(elf::SHF_ALLOC)
            && flags.contains(elf::SHF_EXECINSTR)
        {
            let offset: u64 = section.sh_offset(endian).into();
            let size: u64 = section.sh_size(endian).into();
            let bytes = data
                .read_bytes_at(offset, size.min(TEXT_HASH_BYTES))
                .map_err(|()| "cannot read the .text section".to_owned())?;
            return Ok(Some(text_hash(bytes)));
        }
    }
    Ok(None)
}

fn find_build_id<Elf: FileHeader<Endian = Endianness>>(
    mut notes: object::read::elf::NoteIterator<'_, Elf>,
    endian: Endianness,
) -> Option<Vec<u8>> {
    while let Ok(Some(note)) = notes.next() {
        if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID && !note.desc().is_empty() {
            return Some(note.desc().to_vec());
        }
    }
    None
}

/// minidump-writer's identifier for a file without a build-id.
fn text_hash(text: &[u8]) -> Vec<u8> {
    let mut id = vec![0u8; TEXT_HASH_LEN];
    for chunk in text.chunks(TEXT_HASH_LEN) {
        for (b, c) in id.iter_mut().zip(chunk) {
            *b ^= c;
        }
    }
    id
}

/// Lowercase hex, the way build-ids are written everywhere (`file`, `eu-readelf`, Sentry).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for the kernel's vDSO, which has no file: minidump-writer records it
/// by its soname (`linux-vdso.so.1`, `linux-gate.so.1` on 32-bit), other
/// writers as `[vdso]`.
pub(crate) fn is_vdso(code_file: &str) -> bool {
    code_file.starts_with("linux-vdso.so") || code_file.starts_with("linux-gate.so") || code_file == "[vdso]"
}

/// Finds the file to read for a module recorded as `code_file` with
/// identifier `expected`: the preserved copy from `replacements` if it
/// matches, else the file at `code_file` if it matches, else none (with the
/// reason).
pub(crate) fn locate(code_file: &str, expected: Option<&[u8]>, replacements: &[(PathBuf, PathBuf)]) -> Located {
    if is_vdso(code_file) {
        // Nothing on disk to check; not a problem worth reporting.
        return Located::default();
    }
    let recorded = Path::new(strip_deleted(code_file));
    if !recorded.is_absolute() {
        return Located { file: None, problem: Some(format!("not a file path: {code_file:?}")) };
    }
    let Some(expected) = expected.filter(|id| !id.is_empty()) else {
        return Located {
            file: None,
            problem: Some(format!("no build-id recorded in the dump: cannot verify {}", recorded.display())),
        };
    };

    // A preserved copy is the authority when there is one: it is what was
    // mapped, whereas the path may already hold the next deploy.
    let mut notes = Vec::new();
    for (_, copy) in replacements.iter().filter(|(original, _)| same_path(original, recorded)) {
        match file_identifier(copy) {
            Ok(id) if id == expected => {
                return Located { file: Some(copy.clone()), problem: None };
            }
            Ok(id) => notes.push(format!("preserved copy {} is {}", copy.display(), hex(&id))),
            Err(e) => notes.push(e.describe(copy)),
        }
    }
    let on_disk = match file_identifier(recorded) {
        Ok(id) if id == expected => {
            return Located { file: Some(recorded.to_owned()), problem: None };
        }
        Ok(id) => format!("build-id mismatch: file on disk is {} expected {}", hex(&id), hex(expected)),
        Err(e) => e.describe(recorded),
    };
    notes.insert(0, on_disk);
    Located { file: None, problem: Some(notes.join("; ")) }
}

/// Where distributions install separate debug files.
pub const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

/// Finds a separate debug file by build-id under each root
/// (`ROOT/.build-id/xx/rest.debug`, the layout of Debian's `-dbgsym`
/// packages and of `debuginfod` caches), checking its identifier too.
pub(crate) fn find_debug_file(roots: &[PathBuf], build_id: &[u8]) -> Option<PathBuf> {
    roots
        .iter()
        .filter_map(|root| build_id_path(root, build_id))
        .find(|candidate| matches!(file_identifier(candidate), Ok(found) if found == build_id))
}

/// Where the debug file of `build_id` is under `root`:
/// `ROOT/.build-id/xx/rest.debug`; `None` for an id too short to split.
pub(crate) fn build_id_path(root: &Path, build_id: &[u8]) -> Option<PathBuf> {
    if build_id.len() < 2 {
        return None;
    }
    let id = hex(build_id);
    let (dir, rest) = id.split_at(2);
    Some(root.join(".build-id").join(dir).join(format!("{rest}.debug")))
}

/// Where a binary's debug information is, as `crashwatch doctor` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugInfo {
    /// DWARF inside the binary itself.
    Embedded,
    /// A separate debug file, found by build-id.
    Separate(PathBuf),
    /// No DWARF: only the symbol table (function names, no lines).
    SymbolsOnly,
    /// No DWARF, no `.symtab`, but MiniDebugInfo (`.gnu_debugdata`): the
    /// function names, no lines.
    MiniDebugInfo,
    /// Only `.dynsym`: the exported functions are named, frames in the
    /// others are `module + offset`.
    DynsymOnly,
    /// Neither DWARF nor a symbol table: addresses only.
    Stripped,
}

/// Looks for the debug information of the ELF file at `path`.
pub fn debug_info(path: &Path, debug_roots: &[PathBuf]) -> Result<DebugInfo, IdentityError> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => IdentityError::Missing,
        _ => IdentityError::Io(e),
    })?;
    let file = object::File::parse(&*data).map_err(|e| IdentityError::Parse(e.to_string()))?;
    if file.section_by_name(".debug_info").is_some_and(|s| s.size() > 0) {
        return Ok(DebugInfo::Embedded);
    }
    if let Ok(id) = file_identifier(path)
        && let Some(found) = find_debug_file(debug_roots, &id)
    {
        return Ok(DebugInfo::Separate(found));
    }
    let exports_functions = || {
        use object::{ObjectSymbol, SymbolKind};
        file.dynamic_symbols().any(|s| s.kind() == SymbolKind::Text && s.is_definition())
    };
    Ok(if file.section_by_name(".symtab").is_some() {
        DebugInfo::SymbolsOnly
    } else if file.section_by_name(".gnu_debugdata").is_some() {
        DebugInfo::MiniDebugInfo
    } else if exports_functions() {
        DebugInfo::DynsymOnly
    } else {
        DebugInfo::Stripped
    })
}

/// minidump-writer strips this suffix already; other writers may not.
fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || a.to_str().map(strip_deleted).map(Path::new) == Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_hash_folds_16_byte_chunks() {
        let mut text = vec![0u8; 40];
        text[0] = 0x01;
        text[16] = 0x03;
        text[32] = 0x04;
        text[15] = 0xff;
        let id = text_hash(&text);
        assert_eq!(id[0], 0x01 ^ 0x03 ^ 0x04);
        assert_eq!(id[15], 0xff);
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn own_test_binary_has_a_build_id() {
        let exe = std::env::current_exe().unwrap();
        let id = file_identifier(&exe).unwrap();
        assert!(id.len() >= 16, "{}", hex(&id));
        let located = locate(exe.to_str().unwrap(), Some(&id), &[]);
        assert_eq!(located.file.as_deref(), Some(exe.as_path()));
        assert_eq!(located.problem, None);
    }

    #[test]
    fn mismatch_and_missing_are_reported_not_used() {
        let exe = std::env::current_exe().unwrap();
        let wrong = [0xabu8; 20];
        let located = locate(exe.to_str().unwrap(), Some(&wrong), &[]);
        assert_eq!(located.file, None);
        let problem = located.problem.unwrap();
        assert!(problem.starts_with("build-id mismatch: file on disk is "), "{problem}");
        assert!(problem.ends_with(&format!("expected {}", hex(&wrong))), "{problem}");

        let located = locate("/nonexistent/x", Some(&wrong), &[]);
        assert_eq!(located.problem.as_deref(), Some("file not found: /nonexistent/x"));
    }

    #[test]
    fn matching_preserved_copy_wins_over_the_path() {
        let exe = std::env::current_exe().unwrap();
        let id = file_identifier(&exe).unwrap();
        let replacements = [(PathBuf::from("/srv/app/server"), exe.clone())];
        let located = locate("/srv/app/server (deleted)", Some(&id), &replacements);
        assert_eq!(located.file.as_deref(), Some(exe.as_path()));
    }

    #[test]
    fn vdso_and_non_elf_files() {
        for vdso in ["linux-vdso.so.1", "linux-gate.so", "[vdso]"] {
            assert_eq!(locate(vdso, Some(&[1; 20]), &[]), Located::default());
        }
        let located = locate(env!("CARGO_MANIFEST_DIR"), Some(&[1; 20]), &[]);
        assert!(located.file.is_none());
        assert!(located.problem.is_some());
        let cargo_toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(matches!(file_identifier(&cargo_toml), Err(IdentityError::Parse(_))));
    }
}
