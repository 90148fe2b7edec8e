//! Names, files, lines and inlined calls for addresses of one ELF module,
//! read straight from its (verified) files on demand.
//!
//! minidump-stackwalk gets these from wholesym, whose per-module load is
//! eager: it decompresses every DWARF section, copies it, and builds the
//! full symbol list with every name before the first lookup. Here the
//! files are mapped ([`super::mapped`]), uncompressed sections are used in
//! place, compressed ones are decompressed only when addr2line reads them
//! (never `.debug_loc*`, `.debug_macro`, ...), the symbol list holds indices
//! rather than names ([`super::symbol_list`]), and addr2line parses only the
//! compilation units that hold the addresses asked about.
//!
//! The files are chosen as wholesym chooses them (a separate debug file by
//! build-id, else `.gnu_debuglink` with its CRC, a dwz supplementary file
//! named by `.gnu_debugaltlink`) and DWARF is read with the same addr2line
//! version, so DWARF frames are wholesym's. Function names are not: a
//! symbol names only the addresses inside it, and only Rust and C++ names
//! are demangled (see [`super::symbol_list`] and [`super::demangle`]). A
//! file's MiniDebugInfo (`.gnu_debugdata`) is read with its `.dynsym`.
//! Split DWARF (`.dwo` files, `.dwp` packages) is not read here: it is
//! reported as [`Opened::Unsupported`] (or [`Answer::SplitDwarf`] at
//! lookup) and the caller hands the module to wholesym itself.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use addr2line::gimli::{RunTimeEndian, SectionId};
use wholesym::samply_symbols::object::{self, CompressionFormat, Object, ObjectSection};
use wholesym::samply_symbols::relative_address_base;

use super::demangle::demangle;
use super::dwarf::{Buffers, DwarfLookup, FrameInfo, READ_BY_ADDR2LINE, Section, Sections, SplitDwarf};
use super::identity::{self, SYSTEM_DEBUG_DIR};
use super::model::SymbolSource;
use super::provider::is_placeholder;
use super::symbol_list::{Files, Found, SymbolList};
use crate::sys::mapped::Mapped;

/// The files one module's symbols are read from, mapped, plus the
/// decompressed copies of compressed sections. Owned by the caller's
/// store so that [`ElfSymbols`] can borrow from it.
pub(crate) struct SymbolData {
    /// The file with the symbol table and DWARF (the binary itself, or its
    /// separate debug file).
    path: PathBuf,
    file: Mapped,
    /// A dwz supplementary file (`.gnu_debugaltlink`).
    sup: Option<Mapped>,
    /// The ELF file inside `.gnu_debugdata` (MiniDebugInfo), decompressed.
    mini: Option<Vec<u8>>,
    /// `(in the supplementary file, section, bytes)`; a compressed section
    /// that failed to decompress is absent (and read as empty, as wholesym
    /// does).
    decompressed: Vec<(bool, SectionId, Vec<u8>)>,
}

/// What opening a module's symbol files found.
pub(crate) enum Opened {
    Data(SymbolData),
    /// Debug information in a shape only wholesym reads; the reason.
    Unsupported(String),
}

/// Opens the symbol files of the module whose verified file is `binary`
/// (build-id or text hash `identifier`).
pub(crate) fn open(binary: &Path, identifier: &[u8], debug_dirs: &[PathBuf]) -> Result<Opened, String> {
    let no_debug_info = |path: &Path, e: &dyn std::fmt::Display| format!("no debug info in {}: {e}", path.display());

    // The file wholesym would pick for this build: a debug file by
    // build-id, `<name>.so.dbg` next to a `.so`, else the binary itself.
    // wholesym always looks in the system's debug directory (by build-id,
    // and for `.gnu_debuglink` targets), so this does too.
    let mut roots = debug_dirs.to_vec();
    if !roots.iter().any(|r| r == Path::new(SYSTEM_DEBUG_DIR)) {
        roots.push(PathBuf::from(SYSTEM_DEBUG_DIR));
    }
    let so_dbg = binary
        .to_str()
        .filter(|p| p.ends_with(".so"))
        .map(|p| PathBuf::from(format!("{p}.dbg")))
        .filter(|p| matches!(identity::file_identifier(p), Ok(id) if id == identifier));
    let path = identity::find_debug_file(&roots, identifier).or(so_dbg).unwrap_or_else(|| binary.to_owned());

    let file = Mapped::open(&path).map_err(|e| no_debug_info(&path, &e))?;
    let parsed = object::File::parse(file.bytes()).map_err(|e| no_debug_info(&path, &e))?;

    if let Some(target) = debug_link_target(&path, &parsed) {
        drop(parsed);
        let file = Mapped::open(&target).map_err(|e| no_debug_info(&target, &e))?;
        // wholesym reads a `.gnu_debuglink` target without a dwz file.
        return SymbolData::open(target, file, None);
    }
    if let Some(sup) = supplementary_file(&path, &parsed) {
        drop(parsed);
        return SymbolData::open(path, file, Some(sup));
    }
    let mini = mini_debug_info(&parsed);
    drop(parsed);
    let mut opened = SymbolData::open(path, file, None)?;
    if let Opened::Data(data) = &mut opened {
        data.mini = mini;
    }
    Ok(opened)
}

/// Largest MiniDebugInfo accepted once decompressed. Fedora's hold the
/// function symbols of a binary: a few MB for the largest programs.
const MAX_MINI_DEBUG_INFO: u64 = 256 << 20;

/// The ELF file in `file`'s `.gnu_debugdata` section (xz-compressed), if it
/// has one that decompresses to an ELF file.
fn mini_debug_info<'d>(file: &object::File<'d, &'d [u8]>) -> Option<Vec<u8>> {
    use std::io::Write;
    /// A sink that refuses to grow past [`MAX_MINI_DEBUG_INFO`].
    struct Bounded(Vec<u8>);
    impl Write for Bounded {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.0.len() as u64 + bytes.len() as u64 > MAX_MINI_DEBUG_INFO {
                return Err(std::io::Error::other("MiniDebugInfo larger than accepted"));
            }
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let compressed = file.section_by_name(".gnu_debugdata")?.data().ok()?;
    let mut out = Bounded(Vec::new());
    lzma_rs::xz_decompress(&mut std::io::Cursor::new(compressed), &mut out).ok()?;
    object::File::parse(&*out.0).ok()?;
    Some(out.0)
}

/// The `.gnu_debuglink` target of `file` whose CRC matches, looked for
/// where wholesym looks: next to the file, in `.debug/` there, and under
/// `/usr/lib/debug` plus the file's directory.
fn debug_link_target<'d>(path: &Path, file: &object::File<'d, &'d [u8]>) -> Option<PathBuf> {
    let (name, crc) = file.gnu_debuglink().ok().flatten()?;
    let name = std::str::from_utf8(name).ok()?;
    let dir = std::fs::canonicalize(path.parent()?).ok()?;
    let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
    if let Ok(relative) = dir.strip_prefix("/") {
        candidates.push(Path::new(SYSTEM_DEBUG_DIR).join(relative).join(name));
    }
    candidates.into_iter().find(|candidate| file_crc(candidate).is_some_and(|c| c == crc))
}

/// The `.gnu_debuglink` CRC of a whole file, read in chunks (never all
/// resident at once).
fn file_crc(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The dwz supplementary file named by `.gnu_debugaltlink`, checked by
/// build-id: at the recorded path (relative to the file's directory), else
/// under `/usr/lib/debug/.build-id/`.
fn supplementary_file<'d>(path: &Path, file: &object::File<'d, &'d [u8]>) -> Option<Mapped> {
    let (link, build_id) = file.gnu_debugaltlink().ok().flatten()?;
    let link = std::str::from_utf8(link).ok()?;
    let mut candidates = Vec::new();
    if link.starts_with('/') {
        candidates.push(PathBuf::from(link));
    } else if let Some(dir) = path.parent() {
        candidates.push(dir.join(link));
    }
    candidates.extend(identity::build_id_path(Path::new(SYSTEM_DEBUG_DIR), build_id));
    candidates.into_iter().find_map(|candidate| {
        let mapped = Mapped::open(&candidate).ok()?;
        let found = object::File::parse(mapped.bytes()).ok()?.build_id().ok().flatten() == Some(build_id);
        found.then_some(mapped)
    })
}

impl SymbolData {
    fn open(path: PathBuf, file: Mapped, sup: Option<Mapped>) -> Result<Opened, String> {
        let parsed =
            object::File::parse(file.bytes()).map_err(|e| format!("no debug info in {}: {e}", path.display()))?;
        let mut dwp = OsString::from(path.as_os_str());
        dwp.push(".dwp");
        if Path::new(&dwp).exists() || parsed.section_by_name(".debug_cu_index").is_some() {
            return Ok(Opened::Unsupported(format!("{} comes with a DWARF package", path.display())));
        }
        let mut decompressed = decompress(&parsed, &file, false);
        drop(parsed);
        if let Some(sup) = &sup
            && let Ok(parsed) = object::File::parse(sup.bytes())
        {
            decompressed.extend(decompress(&parsed, sup, true));
        }
        Ok(Opened::Data(SymbolData { path, file, sup, mini: None, decompressed }))
    }

    /// The file the symbols are read from.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Decompressed copies of the compressed sections addr2line reads, from
/// `file` as mapped by `mapped`. The largest is inflated on a second
/// thread while the others are on this one.
fn decompress<'d>(file: &object::File<'d, &'d [u8]>, mapped: &Mapped, in_sup: bool) -> Vec<(bool, SectionId, Vec<u8>)> {
    let mut compressed: Vec<(SectionId, object::CompressedFileRange)> = READ_BY_ADDR2LINE
        .iter()
        .filter_map(|&id| {
            let range = file.section_by_name(id.name())?.compressed_file_range().ok()?;
            (range.format != CompressionFormat::None).then_some((id, range))
        })
        .collect();
    compressed.sort_by_key(|(_, range)| std::cmp::Reverse(range.uncompressed_size));
    let one = |&(id, range): &(SectionId, object::CompressedFileRange)| {
        Some((in_sup, id, decompress_section(mapped, range)?))
    };
    let Some((largest, others)) = compressed.split_first() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let largest = scope.spawn(|| one(largest));
        let mut done: Vec<_> = others.iter().filter_map(one).collect();
        // A panic there is a bug in the inflater: the section reads as
        // undecodable, as any other failure does.
        done.extend(largest.join().ok().flatten());
        done
    })
}

/// One compressed section's bytes, as object's `decompress` gives them
/// (`None` where it fails). zlib streams are inflated from `pread` reads,
/// so the compressed bytes never become resident through the mapping;
/// other formats go through object.
fn decompress_section(mapped: &Mapped, range: object::CompressedFileRange) -> Option<Vec<u8>> {
    if range.format == CompressionFormat::Zlib
        && let Some(bytes) = inflate(mapped, range)
    {
        return Some(bytes);
    }
    Some(range.data(mapped.bytes()).ok()?.decompress().ok()?.into_owned())
}

/// Inflates a zlib section read in pieces; `None` unless it is exactly the
/// declared size and ends where the stream ends (object's own checks).
fn inflate(mapped: &Mapped, range: object::CompressedFileRange) -> Option<Vec<u8>> {
    use flate2::{Decompress, FlushDecompress, Status};
    const PIECE: usize = 256 * 1024;
    let size = usize::try_from(range.uncompressed_size).ok()?;
    let mut out = Vec::new();
    out.try_reserve_exact(size).ok()?;
    let mut inflater = Decompress::new(true);
    let mut piece = vec![0; PIECE];
    let mut read = 0;
    while read < range.compressed_size {
        let n = usize::try_from(range.compressed_size - read).map_or(PIECE, |left| left.min(PIECE));
        mapped.read_at(range.offset.checked_add(read)?, &mut piece[..n]).ok()?;
        read += n as u64;
        let mut input = &piece[..n];
        loop {
            let before = inflater.total_in();
            let status = inflater.decompress_vec(input, &mut out, FlushDecompress::None).ok()?;
            input = &input[usize::try_from(inflater.total_in() - before).ok()?..];
            match status {
                Status::StreamEnd => return (out.len() == size).then_some(out),
                _ if input.is_empty() => break,
                // Output full before the stream ended: more than declared.
                _ if out.len() == out.capacity() => return None,
                _ => {}
            }
        }
    }
    None
}

/// The answer for one address.
#[derive(Debug)]
pub(crate) enum Answer {
    /// No function contains the address.
    Nothing,
    Found {
        /// Start of the function, relative to the module's base.
        start: u32,
        /// Demangled function name (or a `fun_<hex>` placeholder).
        name: String,
        /// The symbol's name as the symbol table spells it; `None` for a
        /// placeholder.
        symbol: Option<String>,
        /// From DWARF, innermost first; `None` without debug information.
        frames: Option<Vec<FrameInfo>>,
    },
    /// The address is in a split-DWARF unit (a `.dwo` file).
    SplitDwarf,
}

/// A module's symbols, ready for lookups.
pub(crate) struct ElfSymbols<'d> {
    file: object::File<'d, &'d [u8]>,
    /// The MiniDebugInfo's ELF file.
    mini: Option<object::File<'d, &'d [u8]>>,
    /// Whether the file has DWARF (`.debug_info`).
    has_dwarf: bool,
    /// Address of the first segment: list addresses are relative to it.
    base: u64,
    list: SymbolList<'d>,
    dwarf: DwarfLookup<'d>,
}

impl<'d> ElfSymbols<'d> {
    /// `buffers` receives the partial copies of `.debug_info` that lookups
    /// make (see [`super::dwarf`]).
    pub(crate) fn new(data: &'d SymbolData, buffers: &'d Buffers) -> Result<ElfSymbols<'d>, String> {
        let file = object::File::parse(data.file.bytes())
            .map_err(|e| format!("no debug info in {}: {e}", data.path.display()))?;
        let base = relative_address_base(&file);
        let mini = data.mini.as_deref().and_then(|bytes| object::File::parse(bytes).ok());
        let list = SymbolList::new(Files { file: &file, mini: mini.as_ref() }, base);
        let endian = if file.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
        let main_sections = sections(data, &file, false);
        let has_dwarf = main_sections
            .iter()
            .zip(READ_BY_ADDR2LINE)
            .any(|(section, id)| id == SectionId::DebugInfo && section.len() != 0);
        let sup_sections = data
            .sup
            .as_ref()
            .and_then(|sup| object::File::parse(sup.bytes()).ok())
            .map(|sup_file| sections(data, &sup_file, true));
        let dwarf = DwarfLookup::new(main_sections, sup_sections, endian, buffers);
        Ok(ElfSymbols { file, mini, has_dwarf, base, list, dwarf })
    }

    /// Builds what every DWARF lookup needs first (see [`DwarfLookup::prepare`]).
    pub(crate) fn prepare(&self) {
        self.dwarf.prepare();
    }

    /// What the module's files hold, for the module list.
    pub(crate) fn found(&self) -> SymbolSource {
        match (self.has_dwarf, self.list.found()) {
            (true, _) => SymbolSource::Dwarf,
            (false, Found::Symtab) => SymbolSource::Symtab,
            (false, Found::Dynsym) => SymbolSource::Dynsym,
            (false, Found::Nothing) => SymbolSource::None,
        }
    }

    /// The function, and its DWARF frames, at `relative` (an address
    /// relative to the module's base).
    pub(crate) fn lookup(&self, relative: u32) -> Answer {
        let Some(Named { start, name, symbol }) = self.name_at(relative) else {
            return Answer::Nothing;
        };
        let Some(svma) = self.base.checked_add(u64::from(relative)) else {
            return Answer::Nothing;
        };
        match self.dwarf.frames(svma) {
            Ok(frames) => Answer::Found { start, name, symbol, frames },
            Err(SplitDwarf) => Answer::SplitDwarf,
        }
    }

    /// The function at `relative`, from the symbol tables alone.
    pub(crate) fn name_at(&self, relative: u32) -> Option<Named> {
        let files = Files { file: &self.file, mini: self.mini.as_ref() };
        let (start, raw_name) = self.list.lookup(files, relative)?;
        Some(if is_placeholder(&raw_name) {
            Named { start, name: raw_name.into_owned(), symbol: None }
        } else {
            // A `.symtab` name may carry its version (`name@@GLIBC_2.34`):
            // not part of the function's name.
            let unversioned = raw_name.split('@').next().unwrap_or_default();
            Named { start, name: demangle(unversioned), symbol: Some(raw_name.into_owned()) }
        })
    }
}

/// A function found in the symbol tables.
pub(crate) struct Named {
    /// Relative to the module's base.
    pub start: u32,
    /// Demangled (or a `fun_<hex>` placeholder).
    pub name: String,
    /// As the symbol table spells it; `None` for a placeholder.
    pub symbol: Option<String>,
}

/// The DWARF sections addr2line reads, from `file` (the supplementary file
/// when `in_sup`): the mapping where they are stored plain, else the
/// decompressed copy; empty when absent or undecodable, as samply-symbols
/// reads them.
fn sections<'d>(data: &'d SymbolData, file: &object::File<'d, &'d [u8]>, in_sup: bool) -> Sections<'d> {
    let mapped = if in_sup { data.sup.as_ref() } else { Some(&data.file) };
    READ_BY_ADDR2LINE.map(|id| {
        let Some(section) = file.section_by_name(id.name()) else {
            return Section::EMPTY;
        };
        let Ok(range) = section.compressed_file_range() else {
            return Section::EMPTY;
        };
        if range.format == CompressionFormat::None {
            match mapped.map(|mapped| (mapped, range.data(mapped.bytes()))) {
                Some((mapped, Ok(stored))) => Section { bytes: stored.data, file: Some((mapped, range.offset)) },
                _ => Section::EMPTY,
            }
        } else {
            let bytes = data
                .decompressed
                .iter()
                .find(|(sup, section, _)| *sup == in_sup && *section == id)
                .map_or(&[][..], |(_, _, bytes)| bytes.as_slice());
            Section { bytes, file: None }
        }
    })
}
