//! DWARF frames (inlined calls, files, lines) for an address, parsing only
//! the compilation units that hold it.
//!
//! addr2line's `Context` is what wholesym, and so minidump-stackwalk, reads
//! DWARF with, and its answers are the reference. But creating one walks
//! every unit of `.debug_info` up front, parsing each unit's abbreviation
//! table and line-program header and keeping them: for ripgrep's 3,000
//! units that is 45 MB before the first lookup, for libc 22 MB.
//!
//! So, per module, [`index`] works out which units cover which addresses
//! (addr2line's own rules, reading little more than each unit's first
//! entry), and for each address [`partial`] gives addr2line a `.debug_info`
//! that holds only the units covering it and those their functions' names
//! refer to, at their real offsets, so that every offset in them stays
//! valid. The other sections are the real ones.
//!
//! A partial context answers as the whole-file one would: addr2line sees
//! the same candidate units for the address, and what they refer to. When
//! it fails anyway (an error, a reference that leads outside the copy), or
//! when the index cannot be built, the address is looked up in a context
//! over the whole `.debug_info`, made once per module: the answer is then
//! the reference one by construction.

mod index;
mod partial;
mod section;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use addr2line::LookupResult;
use addr2line::gimli::{self, EndianSlice, RunTimeEndian, SectionId};

use index::{Parts, UnitIndex};
pub(crate) use section::Section;

/// Where the partial copies of `.debug_info` live: append-only, owned by
/// the caller's store so that contexts can borrow from it.
pub(crate) type Buffers = elsa::sync::FrozenVec<Box<memmap2::Mmap>>;

type Reader<'d> = EndianSlice<'d, RunTimeEndian>;
type Context<'d> = addr2line::Context<Reader<'d>>;

/// The DWARF sections addr2line reads. It is handed the others
/// (`.debug_loc*`, `.debug_macro`, `.debug_types`, ...) empty, so that
/// compressed ones are not decompressed for nothing.
pub(crate) const READ_BY_ADDR2LINE: [SectionId; 10] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugAranges,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugRanges,
    SectionId::DebugRngLists,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
];

/// Each of [`READ_BY_ADDR2LINE`], in that order.
pub(crate) type Sections<'d> = [Section<'d>; READ_BY_ADDR2LINE.len()];

fn get<'d>(sections: &Sections<'d>, id: SectionId) -> Section<'d> {
    READ_BY_ADDR2LINE.iter().position(|&s| s == id).map_or(Section::EMPTY, |i| sections[i])
}

/// One frame of the DWARF answer for an address.
#[derive(Debug)]
pub(crate) struct FrameInfo {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// The address is in a split-DWARF unit (a `.dwo` file): not read here.
#[derive(Debug)]
pub(crate) struct SplitDwarf;

/// The DWARF of one file.
pub(crate) struct DwarfLookup<'d> {
    sections: Sections<'d>,
    /// Those of a dwz supplementary file, if there is one.
    sup_sections: Option<Sections<'d>>,
    endian: RunTimeEndian,
    buffers: &'d Buffers,
    /// `None` when it could not be built (the whole-file context is used).
    index: OnceLock<Option<UnitIndex>>,
    /// Contexts over a few units, by the offsets of the units that may
    /// cover the addresses they were made for.
    partial: Mutex<HashMap<Vec<usize>, Option<Context<'d>>>>,
    full: OnceLock<Option<Mutex<Context<'d>>>>,
}

impl<'d> DwarfLookup<'d> {
    pub(crate) fn new(
        sections: Sections<'d>,
        sup_sections: Option<Sections<'d>>,
        endian: RunTimeEndian,
        buffers: &'d Buffers,
    ) -> DwarfLookup<'d> {
        DwarfLookup {
            sections,
            sup_sections,
            endian,
            buffers,
            index: OnceLock::new(),
            partial: Mutex::new(HashMap::new()),
            full: OnceLock::new(),
        }
    }

    /// Builds the unit index, which every lookup needs first.
    pub(crate) fn prepare(&self) {
        if self.sup_sections.is_none() {
            self.index.get_or_init(|| self.build_index());
        }
    }

    /// The frames at `probe` (an address as the file states it), innermost
    /// first, as wholesym reports them: `None` without DWARF for it, or
    /// when reading it failed.
    pub(crate) fn frames(&self, probe: u64) -> Result<Option<Vec<FrameInfo>>, SplitDwarf> {
        // With a supplementary file addr2line reads all of its units anyway.
        let index = match &self.sup_sections {
            Some(_) => None,
            None => self.index.get_or_init(|| self.build_index()).as_ref(),
        };
        if let Some(index) = index {
            let units = index.units_at(probe);
            if units.is_empty() {
                // No unit covers it: addr2line would find nothing either.
                return Ok(None);
            }
            let mut partial = self.partial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let context = partial.entry(units).or_insert_with_key(|units| self.partial_context(index, units));
            if let Some(context) = context {
                match context.find_frames(probe) {
                    LookupResult::Output(Ok(iter)) => {
                        if let Ok(frames) = convert_frames(iter) {
                            return Ok(frames);
                        }
                    }
                    LookupResult::Output(Err(_)) => {}
                    LookupResult::Load { .. } => return Err(SplitDwarf),
                }
            }
        }
        let Some(full) = self.full.get_or_init(|| self.context(None).map(Mutex::new)) else {
            return Ok(None);
        };
        let full = full.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match full.find_frames(probe) {
            LookupResult::Output(Ok(iter)) => Ok(convert_frames(iter).ok().flatten()),
            LookupResult::Output(Err(_)) => Ok(None),
            LookupResult::Load { .. } => Err(SplitDwarf),
        }
    }

    fn dwarf(&self, debug_info: Option<&'d [u8]>) -> Option<gimli::Dwarf<Reader<'d>>> {
        let endian = self.endian;
        let section = |id| {
            let bytes = match (id, debug_info) {
                (SectionId::DebugInfo, Some(replacement)) => replacement,
                _ => get(&self.sections, id).bytes,
            };
            Ok::<_, gimli::Error>(EndianSlice::new(bytes, endian))
        };
        let mut dwarf = gimli::Dwarf::load(section).ok()?;
        if let Some(sup) = &self.sup_sections {
            dwarf.load_sup(|id| Ok::<_, gimli::Error>(EndianSlice::new(get(sup, id).bytes, endian))).ok()?;
        }
        Some(dwarf)
    }

    /// A context whose `.debug_info` is `debug_info` instead of the file's.
    fn context(&self, debug_info: Option<&'d [u8]>) -> Option<Context<'d>> {
        let mut dwarf = self.dwarf(debug_info)?;
        // Units that share an abbreviation table (all of them, in a
        // rustc LTO build) then share one parsed copy; addr2line does not
        // ask for this itself. The tables are the same either way.
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        addr2line::Context::from_dwarf(dwarf).ok()
    }

    fn build_index(&self) -> Option<UnitIndex> {
        let parts = Parts {
            info: get(&self.sections, SectionId::DebugInfo),
            line: get(&self.sections, SectionId::DebugLine),
            ranges: get(&self.sections, SectionId::DebugRanges),
            rnglists: get(&self.sections, SectionId::DebugRngLists),
        };
        index::build(&self.dwarf(None)?, &parts, self.endian)
    }

    fn partial_context(&self, index: &UnitIndex, offsets: &[usize]) -> Option<Context<'d>> {
        let info = get(&self.sections, SectionId::DebugInfo);
        let abbrev = get(&self.sections, SectionId::DebugAbbrev).bytes;
        let copy = partial::copy(info, abbrev, index, offsets, self.endian)?;
        let copy: &'d memmap2::Mmap = self.buffers.push_get(Box::new(copy));
        self.context(Some(copy))
    }
}

/// addr2line's frames as samply-symbols reports them, but for names
/// (demangled by [`super::demangle`], which leaves C names alone): paths as
/// addr2line builds them; `None` for none.
/// `Err` for an error while reading them (samply-symbols then reports
/// none).
fn convert_frames(mut iter: addr2line::FrameIter<'_, Reader<'_>>) -> Result<Option<Vec<FrameInfo>>, gimli::Error> {
    let mut frames = Vec::new();
    while let Some(frame) = iter.next()? {
        let function =
            frame.function.as_ref().and_then(|f| f.raw_name().ok()).map(|name| super::demangle::demangle(&name));
        let (file, line) = match &frame.location {
            Some(location) => (location.file.map(str::to_owned), location.line),
            None => (None, None),
        };
        frames.push(FrameInfo { function, file, line });
    }
    Ok((!frames.is_empty()).then_some(frames))
}
