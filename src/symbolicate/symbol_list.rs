//! Which function an address is in, from an ELF file's symbol tables.
//!
//! Two questions are answered here, and they are kept apart:
//!
//! - **Is there a function at this address?** The stack scanner asks it of
//!   every candidate return address, so it is answered exactly as
//!   minidump-stackwalk answers it (samply-symbols' `SymbolList`, through
//!   wholesym), or stacks would differ: `.symtab`, then `.dynsym` (function
//!   symbols, and sized untyped ones, in executable sections), then
//!   exports, then the starts of `.eh_frame` entries, then `e_entry`; ends
//!   of text sections, of sized `.symtab` functions and of `.eh_frame`
//!   entries stop a function. Sorted by address, the first entry at each
//!   address wins. This list extends a symbol to the next entry, which in a
//!   file with only `.dynsym` is often another function altogether. (One
//!   fix: `.eh_frame` addresses are made relative like the others; see
//!   [`eh_frame_functions`].)
//! - **What is its name?** Only a symbol whose extent holds the address
//!   names it: `[st_value, st_value + st_size)`. A symbol without a size
//!   (assembly without `.size`) names its own address, and the rest of the
//!   `.eh_frame` entry that starts exactly there, since the unwind table
//!   records where that function ends. Where the first answer is yes and
//!   the second finds no symbol, the function gets a `fun_<hex>`
//!   placeholder, which the walk treats as a function and the report as
//!   unnamed (`module + offset`).
//!
//! The symbols come from the file's `.symtab` and `.dynsym`, and from the
//! `.symtab` of its MiniDebugInfo (`.gnu_debugdata`: an xz-compressed ELF
//! holding the function symbols `.dynsym` lacks), when there is one.
//!
//! Entries hold a symbol's *index* (or, for exports, its name as a slice of
//! the mapped file) rather than its name; the name is read and demangled
//! only for the addresses asked about.

use std::borrow::Cow;

use addr2line::gimli;
use gimli::{CieOrFde, EhFrame, UnwindSection};
use wholesym::samply_symbols::object::{
    self, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionFlags, SectionIndex, SectionKind, SymbolIndex,
    SymbolKind,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry<'d> {
    /// From `.symtab`.
    Symbol(SymbolIndex),
    /// From `.dynsym`.
    Dynamic(SymbolIndex),
    /// From the `.symtab` of the MiniDebugInfo.
    Mini(SymbolIndex),
    Export(&'d [u8]),
    /// A function start known from `.eh_frame` only.
    Synthesized,
    /// The program's entry point (`e_entry`).
    Start,
    /// The end of a function or section: nothing is here.
    End,
}

/// A symbol that names the addresses `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Extent<'d> {
    start: u32,
    end: u32,
    /// Among aliases the lowest wins: global, weak, local (the public name,
    /// `abort`, over the library's internal ones, `__GI_abort`).
    rank: u8,
    entry: Entry<'d>,
}

/// [`Extent::rank`] of a symbol.
fn rank<'d>(symbol: &object::Symbol<'d, '_, &'d [u8]>) -> u8 {
    if symbol.is_weak() {
        1
    } else if symbol.is_global() {
        0
    } else {
        2
    }
}

/// What kinds of symbols a file has, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// `.symtab` (the file's own, or its MiniDebugInfo's).
    Symtab,
    /// Only `.dynsym`: the exported functions, not the others.
    Dynsym,
    Nothing,
}

/// The files the symbols are read from: the ELF file and the ELF inside its
/// `.gnu_debugdata`.
#[derive(Clone, Copy)]
pub(crate) struct Files<'a, 'd> {
    pub file: &'a object::File<'d, &'d [u8]>,
    pub mini: Option<&'a object::File<'d, &'d [u8]>>,
}

/// The sorted function starts and ends of one ELF file, relative to its
/// first segment's address.
pub(crate) struct SymbolList<'d> {
    /// Where functions start and end, as minidump-stackwalk sees them.
    entries: Vec<(u32, Entry<'d>)>,
    /// The symbols that name addresses, by start (for one start, in the
    /// order of preference).
    extents: Vec<Extent<'d>>,
    /// `reach[i]`: the largest `end` of `extents[..=i]`, so that a lookup
    /// stops walking back as soon as no earlier symbol can hold the address.
    reach: Vec<u32>,
}

impl<'d> SymbolList<'d> {
    pub(crate) fn new(files: Files<'_, 'd>, base: u64) -> SymbolList<'d> {
        let file = files.file;
        let relative = |address: u64| u32::try_from(address.checked_sub(base)?).ok();
        let mut entries = Vec::new();

        let executable = |file: &object::File<'d, &'d [u8]>| -> Vec<SectionIndex> {
            file.sections()
                .filter(|section| match (section.kind(), section.flags()) {
                    (SectionKind::Text, _) => true,
                    // In a separate debug file (and in MiniDebugInfo) the
                    // code sections are NOBITS but keep their flags.
                    (SectionKind::UninitializedData, SectionFlags::Elf { sh_flags }) => {
                        sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0
                    }
                    _ => false,
                })
                .map(|section| section.index())
                .collect()
        };
        let is_function = |executable: &[SectionIndex], symbol: &object::Symbol<'d, '_, &'d [u8]>| {
            symbol.address() != 0
                && match symbol.kind() {
                    SymbolKind::Text => true,
                    // Sized untyped symbols (some assembly); unsized ones
                    // are often labels in the middle of a function.
                    SymbolKind::Label => symbol.size() != 0,
                    _ => false,
                }
                && symbol.section_index().is_some_and(|index| executable.contains(&index))
        };

        // (start, size, rank, entry) of every function symbol, best table
        // first.
        let mut symbols: Vec<(u32, u64, u8, Entry<'d>)> = Vec::new();
        let own = executable(file);
        for symbol in file.symbols().filter(|s| is_function(&own, s)) {
            if let Some(address) = relative(symbol.address()) {
                symbols.push((address, symbol.size(), rank(&symbol), Entry::Symbol(symbol.index())));
            }
        }
        if let Some(mini) = files.mini {
            let inner = executable(mini);
            for symbol in mini.symbols().filter(|s| is_function(&inner, s)) {
                if let Some(address) = relative(symbol.address()) {
                    symbols.push((address, symbol.size(), rank(&symbol), Entry::Mini(symbol.index())));
                }
            }
        }
        for symbol in file.dynamic_symbols().filter(|s| is_function(&own, s)) {
            if let Some(address) = relative(symbol.address()) {
                symbols.push((address, symbol.size(), rank(&symbol), Entry::Dynamic(symbol.index())));
            }
        }

        // Best first: for equal addresses the first entry added is kept.
        entries.extend(symbols.iter().map(|&(address, _, _, entry)| (address, entry)));
        if let Ok(exports) = file.exports() {
            for export in exports {
                // Wrapping, as samply-symbols computes it in release builds.
                entries.push((export.address().wrapping_sub(base) as u32, Entry::Export(export.name())));
            }
        }
        let fdes = eh_frame_functions(file, base);
        entries.extend(fdes.iter().map(|&(start, _)| (start, Entry::Synthesized)));
        if let Some(entry_point) = file.entry().checked_sub(base) {
            entries.push((entry_point as u32, Entry::Start));
        }
        for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
            if let Some(end) = section.address().checked_add(section.size()).and_then(relative) {
                entries.push((end, Entry::End));
            }
        }
        entries.extend(
            symbols.iter().filter(|(_, size, _, entry)| *size != 0 && !matches!(entry, Entry::Dynamic(_))).filter_map(
                |&(start, size, _, entry)| {
                    // Ends of sized `.symtab` functions (samply-symbols does not
                    // end `.dynsym` ones).
                    let is_text = match entry {
                        Entry::Symbol(index) => file.symbol_by_index(index).is_ok_and(|s| s.kind() == SymbolKind::Text),
                        Entry::Mini(index) => files
                            .mini
                            .and_then(|m| m.symbol_by_index(index).ok())
                            .is_some_and(|s| s.kind() == SymbolKind::Text),
                        _ => false,
                    };
                    let end = u32::try_from(u64::from(start).checked_add(size)?).ok()?;
                    is_text.then_some((end, Entry::End))
                },
            ),
        );
        entries.extend(fdes.iter().map(|&(_, end)| (end, Entry::End)));

        // Stable: among entries at one address the best, added first, stays.
        entries.sort_by_key(|(address, _)| *address);
        entries.dedup_by_key(|(address, _)| *address);
        entries.shrink_to_fit();

        let mut by_start = fdes;
        by_start.sort_unstable();
        let mut extents: Vec<Extent<'d>> = symbols
            .into_iter()
            .filter_map(|(start, size, rank, entry)| {
                let end = if size != 0 {
                    u32::try_from(u64::from(start).checked_add(size)?).unwrap_or(u32::MAX)
                } else {
                    // An unsized symbol: its own address, or the unwind
                    // entry that starts there.
                    match by_start.binary_search_by_key(&start, |&(fde, _)| fde) {
                        Ok(i) if by_start[i].1 > start => by_start[i].1,
                        _ => start.checked_add(1)?,
                    }
                };
                Some(Extent { start, end, rank, entry })
            })
            .collect();
        // Stable, so among aliases of one rank the first in the tables
        // stays first.
        extents.sort_by_key(|extent| (extent.start, extent.rank));
        extents.dedup_by(|later, earlier| later.start == earlier.start && later.end == earlier.end);
        extents.shrink_to_fit();
        let reach = extents
            .iter()
            .scan(0, |furthest, extent| {
                *furthest = extent.end.max(*furthest);
                Some(*furthest)
            })
            .collect();
        SymbolList { entries, extents, reach }
    }

    /// What kinds of symbols the list holds.
    pub(crate) fn found(&self) -> Found {
        if self.extents.iter().any(|e| matches!(e.entry, Entry::Symbol(_) | Entry::Mini(_))) {
            Found::Symtab
        } else if self.extents.is_empty() {
            Found::Nothing
        } else {
            Found::Dynsym
        }
    }

    /// The function containing `address` (relative): its start and its raw
    /// (mangled) name, or a `fun_<hex>` placeholder where the walk sees a
    /// function but no symbol holds the address.
    pub(crate) fn lookup(&self, files: Files<'_, 'd>, address: u32) -> Option<(u32, Cow<'d, str>)> {
        if let Some(extent) = self.extent_at(address)
            && let Some(name) = name(files, extent.entry)
        {
            return Some((extent.start, name));
        }
        let start = self.function_at(address)?;
        Some((start, Cow::Owned(format!("fun_{start:x}"))))
    }

    /// The innermost symbol whose extent holds `address`; among aliases,
    /// the preferred one.
    fn extent_at(&self, address: u32) -> Option<&Extent<'d>> {
        let after = self.extents.partition_point(|e| e.start <= address);
        let mut found: Option<usize> = None;
        for i in (0..after).rev() {
            if self.reach[i] <= address {
                break;
            }
            let extent = &self.extents[i];
            match found {
                // Walking back over aliases of the one found.
                Some(j) if self.extents[j].start == extent.start && extent.end > address => found = Some(i),
                Some(_) => break,
                None if extent.end > address => found = Some(i),
                None => {}
            }
        }
        found.map(|i| &self.extents[i])
    }

    /// The start of the function holding `address`, as minidump-stackwalk
    /// sees functions.
    fn function_at(&self, address: u32) -> Option<u32> {
        let index = match self.entries.binary_search_by_key(&address, |(start, _)| *start) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let (start, entry) = self.entries[index];
        // The last entry has no known end: samply-symbols answers nothing.
        self.entries.get(index + 1)?;
        (entry != Entry::End).then_some(start)
    }
}

/// The raw name of a symbol entry.
fn name<'d>(files: Files<'_, 'd>, entry: Entry<'d>) -> Option<Cow<'d, str>> {
    let bytes = match entry {
        Entry::Symbol(index) => files.file.symbol_by_index(index).ok()?.name_bytes().ok()?,
        Entry::Mini(index) => files.mini?.symbol_by_index(index).ok()?.name_bytes().ok()?,
        Entry::Dynamic(index) => files.file.dynamic_symbol_table()?.symbol_by_index(index).ok()?.name_bytes().ok()?,
        Entry::Export(name) => name,
        Entry::Synthesized | Entry::Start | Entry::End => return None,
    };
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes))
}

/// `(start, end)` of every `.eh_frame` entry, relative to `base` and
/// truncated to 32 bits. samply-symbols leaves them absolute: in a file
/// whose first segment is not at 0 (a non-PIE executable, such as node at
/// 0x400000) its placeholders and function ends are off by that address.
fn eh_frame_functions<'d>(file: &object::File<'d, &'d [u8]>, base: u64) -> Vec<(u32, u32)> {
    let address_of = |name: &str| file.section_by_name(name).map_or(0, |s| s.address());
    let bases = gimli::BaseAddresses::default()
        .set_eh_frame_hdr(address_of(".eh_frame_hdr"))
        .set_eh_frame(address_of(".eh_frame"))
        .set_text(address_of(".text"))
        .set_got(address_of(".got"));
    let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
    let address_size = file.architecture().address_size().unwrap_or(object::AddressSize::U64) as u8;
    let Some(section) = file.section_by_name(".eh_frame") else {
        return Vec::new();
    };
    let Ok(data) = section.uncompressed_data() else {
        return Vec::new();
    };

    let mut eh_frame = EhFrame::new(&data, endian);
    eh_frame.set_address_size(address_size);
    let mut current_cie = None;
    let mut entries = eh_frame.entries(&bases);
    let mut functions = Vec::new();
    while let Ok(Some(entry)) = entries.next() {
        match entry {
            CieOrFde::Cie(cie) => current_cie = Some(cie),
            CieOrFde::Fde(partial) => {
                let parsed = partial.parse(|eh_frame, bases, offset| {
                    if let Some(cie) = &current_cie
                        && cie.offset() == offset.0
                    {
                        return Ok(cie.clone());
                    }
                    let cie = eh_frame.cie_from_offset(bases, offset);
                    if let Ok(cie) = &cie {
                        current_cie = Some(cie.clone());
                    }
                    cie
                });
                if let Ok(fde) = parsed {
                    let start = fde.initial_address().wrapping_sub(base);
                    functions.push((start as u32, start.wrapping_add(fde.len()) as u32));
                }
            }
        }
    }
    functions
}
