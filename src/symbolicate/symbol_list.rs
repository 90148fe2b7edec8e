//! Which function an address is in, from an ELF file's symbol tables.
//!
//! The function *name* of a frame comes from here, not from DWARF, and the
//! stack scanner asks for names of candidate return addresses to judge
//! them, so this list must answer exactly as the one minidump-stackwalk
//! uses (samply-symbols' `SymbolList`, through wholesym) or stacks differ.
//! It is built the same way, from the same `object` version: `.symtab`,
//! then `.dynsym` (function symbols, and sized untyped ones, in executable
//! sections), then exports, then `fun_<hex>` placeholders at the starts of
//! `.eh_frame` entries, then `EntryPoint`; ends of text sections, of sized
//! functions and of `.eh_frame` entries stop a function. Sorted by address,
//! the first entry at each address wins.
//!
//! What differs is the cost: an entry holds a symbol's *index* (or, for
//! exports, its name as a slice of the mapped file) rather than its name,
//! and the name is read and demangled only for the addresses asked about.

use std::borrow::Cow;

use addr2line::gimli;
use gimli::{CieOrFde, EhFrame, UnwindSection};
use wholesym::samply_symbols::object::{
    self, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionFlags, SectionIndex, SectionKind, SymbolIndex,
    SymbolKind,
};

#[derive(Clone, Copy, Debug)]
enum Entry<'d> {
    /// From `.symtab`.
    Symbol(SymbolIndex),
    /// From `.dynsym`.
    Dynamic(SymbolIndex),
    Export(&'d [u8]),
    /// A function start known from `.eh_frame` only.
    Synthesized,
    /// The program's entry point (`e_entry`), named `EntryPoint`.
    Start,
    /// The end of a function or section: nothing is here.
    End,
}

/// The sorted function starts and ends of one ELF file, relative to its
/// first segment's address.
pub(crate) struct SymbolList<'d> {
    entries: Vec<(u32, Entry<'d>)>,
}

impl<'d> SymbolList<'d> {
    pub(crate) fn new(file: &object::File<'d, &'d [u8]>, base: u64) -> SymbolList<'d> {
        let relative = |address: u64| u32::try_from(address.checked_sub(base)?).ok();
        let mut entries = Vec::new();

        let executable: Vec<SectionIndex> = file
            .sections()
            .filter(|section| match (section.kind(), section.flags()) {
                (SectionKind::Text, _) => true,
                // In a separate debug file the code sections are NOBITS but
                // keep their flags.
                (SectionKind::UninitializedData, SectionFlags::Elf { sh_flags }) => {
                    sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0
                }
                _ => false,
            })
            .map(|section| section.index())
            .collect();
        let is_function = |symbol: &object::Symbol<'d, '_, &'d [u8]>| {
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

        // Best first: for equal addresses the first entry added is kept.
        for symbol in file.symbols().filter(is_function) {
            if let Some(address) = relative(symbol.address()) {
                entries.push((address, Entry::Symbol(symbol.index())));
            }
        }
        for symbol in file.dynamic_symbols().filter(is_function) {
            if let Some(address) = relative(symbol.address()) {
                entries.push((address, Entry::Dynamic(symbol.index())));
            }
        }
        if let Ok(exports) = file.exports() {
            for export in exports {
                // Wrapping, as samply-symbols computes it in release builds.
                entries.push((export.address().wrapping_sub(base) as u32, Entry::Export(export.name())));
            }
        }
        let fdes = eh_frame_functions(file);
        entries.extend(fdes.iter().map(|&(start, _)| (start, Entry::Synthesized)));
        if let Some(entry_point) = file.entry().checked_sub(base) {
            entries.push((entry_point as u32, Entry::Start));
        }
        for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
            if let Some(end) = section.address().checked_add(section.size()).and_then(relative) {
                entries.push((end, Entry::End));
            }
        }
        for symbol in file.symbols() {
            if symbol.kind() == SymbolKind::Text
                && symbol.address() != 0
                && symbol.size() != 0
                && let Some(end) = symbol.address().checked_add(symbol.size()).and_then(relative)
            {
                entries.push((end, Entry::End));
            }
        }
        entries.extend(fdes.iter().map(|&(_, end)| (end, Entry::End)));

        // Stable: among entries at one address the best, added first, stays.
        entries.sort_by_key(|(address, _)| *address);
        entries.dedup_by_key(|(address, _)| *address);
        entries.shrink_to_fit();
        SymbolList { entries }
    }

    /// The function containing `address` (relative): its start and its raw
    /// (mangled) name, or a placeholder name.
    pub(crate) fn lookup(&self, file: &object::File<'d, &'d [u8]>, address: u32) -> Option<(u32, Cow<'d, str>)> {
        let index = match self.entries.binary_search_by_key(&address, |(start, _)| *start) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let (start, entry) = self.entries[index];
        // The last entry has no known end: samply-symbols answers nothing.
        self.entries.get(index + 1)?;
        let name = match entry {
            Entry::End => return None,
            Entry::Synthesized => Cow::Owned(format!("fun_{start:x}")),
            Entry::Start => Cow::Borrowed("EntryPoint"),
            Entry::Symbol(index) => String::from_utf8_lossy(file.symbol_by_index(index).ok()?.name_bytes().ok()?),
            Entry::Dynamic(index) => {
                String::from_utf8_lossy(file.dynamic_symbol_table()?.symbol_by_index(index).ok()?.name_bytes().ok()?)
            }
            Entry::Export(name) => String::from_utf8_lossy(name),
        };
        Some((start, name))
    }
}

/// `(start, end)` of every `.eh_frame` entry, relative addresses truncated
/// to 32 bits as samply-symbols does (it uses them for placeholders).
fn eh_frame_functions<'d>(file: &object::File<'d, &'d [u8]>) -> Vec<(u32, u32)> {
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
                    let start = fde.initial_address();
                    functions.push((start as u32, start.wrapping_add(fde.len()) as u32));
                }
            }
        }
    }
    functions
}
