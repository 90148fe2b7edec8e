//! Which compilation units cover which addresses: the table addr2line
//! builds when it creates a context, built here without keeping any unit
//! and, for most units, without reading more than their first entry.
//!
//! addr2line takes a unit's ranges from its root entry's `DW_AT_ranges`,
//! else from `.debug_aranges`, else from `DW_AT_low_pc`/`DW_AT_high_pc`,
//! else from the sequences of its line program. The fast path reads the
//! unit's first KiB (with `pread`), the one abbreviation its root entry
//! uses, and the range list; anything unusual (split DWARF, a unit with no
//! declared ranges, a read error) goes to the slow path, which does what
//! addr2line does through gimli's `Unit`.
//!
//! The index may list *more* units for an address than addr2line would
//! (a unit that addr2line then skips as unreadable, say): a partial
//! context that holds an extra unit answers as the whole-file context
//! does, because addr2line weighs that unit the same way in both. It must
//! never list fewer, which is why every rule above is addr2line's.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use addr2line::gimli::{self, EndianSlice, Reader as _, RunTimeEndian, Section as _};

use super::Reader;
use super::section::Section;

/// Bytes read from the start of each unit: its header and root entry fit
/// in this for every compiler seen; larger ones are read whole.
const HEAD_READ: usize = 1024;
/// First read of a range list; doubled until the list fits.
const LIST_READ: usize = 4096;
/// Units whose ranges could not be worked out go into every partial
/// context; past this many the index is not used.
const MAX_EVERYWHERE: usize = 64;

pub(crate) struct UnitIndex {
    /// `(begin, end, unit offset)`, sorted by `end`.
    ranges: Vec<(u64, u64, usize)>,
    /// For each position in `ranges`, the smallest `begin` from there on.
    min_begin: Vec<u64>,
    /// Units that may cover any address.
    everywhere: Vec<usize>,
    /// Offsets of all units, sorted.
    starts: Vec<usize>,
}

impl UnitIndex {
    /// Offsets of the units that may cover `probe`, sorted.
    pub(crate) fn units_at(&self, probe: u64) -> Vec<usize> {
        let first = self.ranges.partition_point(|&(_, end, _)| end <= probe);
        let mut units: Vec<usize> = (first..self.ranges.len())
            .take_while(|&i| self.min_begin[i] <= probe)
            .filter(|&i| self.ranges[i].0 <= probe)
            .map(|i| self.ranges[i].2)
            .chain(self.everywhere.iter().copied())
            .collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    /// Offset of the unit that starts at or before `offset` (the one that
    /// holds it, if any does).
    pub(crate) fn unit_before(&self, offset: usize) -> Option<usize> {
        let i = self.starts.partition_point(|&start| start <= offset).checked_sub(1)?;
        Some(self.starts[i])
    }
}

/// The sections the index reads through copies.
pub(crate) struct Parts<'d> {
    pub info: Section<'d>,
    pub line: Section<'d>,
    pub ranges: Section<'d>,
    pub rnglists: Section<'d>,
}

/// An error after which addr2line would not create a context at all.
struct Fatal;

/// What one unit adds to the index.
enum Outcome {
    /// No ranges (a type or partial unit, an empty unit, one addr2line
    /// skips).
    Nothing,
    Ranges(Vec<(u64, u64)>),
    Everywhere,
}

/// Builds the index; `None` when addr2line could not create a context for
/// this DWARF (the whole-file context then fails the same way), or when
/// too many units would have to go everywhere.
pub(crate) fn build(dwarf: &gimli::Dwarf<Reader<'_>>, parts: &Parts<'_>, endian: RunTimeEndian) -> Option<UnitIndex> {
    // `(unit offset, aranges set offset)`, as addr2line collects them.
    let mut aranges = Vec::new();
    let mut headers = dwarf.debug_aranges.headers();
    while let Some(header) = headers.next().ok()? {
        aranges.push((header.debug_info_offset().0, header.offset()));
    }
    aranges.sort_by_key(|a| a.0);

    let mut ranges = Vec::new();
    let mut everywhere = Vec::new();
    let mut starts = Vec::new();
    let roots = RefCell::new(None);
    let mut offset = 0;
    while offset < parts.info.len() {
        let head = parts.info.read(offset, HEAD_READ)?;
        let length = unit_length(&head, endian)?;
        let end = offset.checked_add(length).filter(|&end| end <= parts.info.len())?;
        starts.push(offset);
        let unit = Unit { offset, length, aranges: &aranges, roots: &roots };
        let fast = unit.fast(dwarf, parts, &head[..head.len().min(length)], endian);
        let outcome = match fast {
            Ok(Some(outcome)) => outcome,
            Ok(None) => unit.slow(dwarf).ok()?,
            Err(Fatal) => return None,
        };
        match outcome {
            Outcome::Nothing => {}
            Outcome::Ranges(found) => ranges.extend(found.into_iter().map(|(begin, end)| (begin, end, offset))),
            Outcome::Everywhere => {
                everywhere.push(offset);
                if everywhere.len() > MAX_EVERYWHERE {
                    return None;
                }
            }
        }
        offset = end;
    }

    // Contiguous ranges of one unit are one range.
    ranges.sort_unstable_by_key(|&(begin, _, unit)| (unit, begin));
    ranges.dedup_by(|next, previous| {
        let joined = next.2 == previous.2 && next.0 <= previous.1;
        if joined {
            previous.1 = previous.1.max(next.1);
        }
        joined
    });
    ranges.sort_unstable_by_key(|&(_, end, _)| end);
    ranges.shrink_to_fit();
    let mut min_begin = vec![0; ranges.len()];
    let mut min = u64::MAX;
    for (i, &(begin, _, _)) in ranges.iter().enumerate().rev() {
        min = min.min(begin);
        min_begin[i] = min;
    }
    Some(UnitIndex { ranges, min_begin, everywhere, starts })
}

/// The size of the unit that starts with `head`, length field included;
/// `None` for a reserved length value (gimli rejects those).
pub(crate) fn unit_length(head: &[u8], endian: RunTimeEndian) -> Option<usize> {
    let mut input = EndianSlice::new(head, endian);
    let length = input.read_u32().ok()?;
    match length {
        0..0xffff_fff0 => usize::try_from(length).ok()?.checked_add(4),
        0xffff_ffff => usize::try_from(input.read_u64().ok()?).ok()?.checked_add(12),
        _ => None,
    }
}

/// The range attributes of a unit's root entry, as gimli's `Unit` and
/// addr2line read them.
#[derive(Default)]
struct Declared {
    low_pc: Option<u64>,
    high_pc: Option<u64>,
    size: Option<u64>,
    ranges: Option<gimli::RangeListsOffset>,
}

struct Unit<'a> {
    offset: usize,
    length: usize,
    aranges: &'a [(usize, gimli::DebugArangesOffset)],
    /// The last root abbreviation parsed, by (table offset, code).
    roots: &'a RefCell<Option<RootAbbreviation>>,
}

type RootAbbreviation = ((usize, u64), Option<Rc<gimli::Abbreviations>>);

impl Unit<'_> {
    /// The unit's ranges from its first bytes. `Ok(None)`: the slow path
    /// must decide.
    fn fast(
        &self,
        dwarf: &gimli::Dwarf<Reader<'_>>,
        parts: &Parts<'_>,
        head: &[u8],
        endian: RunTimeEndian,
    ) -> Result<Option<Outcome>, Fatal> {
        match self.root(dwarf, head, endian) {
            Some(root) => self.ranges(dwarf, parts, root),
            None if head.len() < self.length => {
                let whole = parts.info.read(self.offset, self.length).ok_or(Fatal)?;
                match self.root(dwarf, &whole, endian) {
                    Some(root) => self.ranges(dwarf, parts, root),
                    None => Ok(None),
                }
            }
            None => Ok(None),
        }
    }

    /// The root entry's range attributes, read from `bytes` (the start of
    /// the unit). `None` when anything is unusual. `Some(None)` for a unit
    /// without ranges (type and partial units, an empty root).
    fn root(&self, dwarf: &gimli::Dwarf<Reader<'_>>, bytes: &[u8], endian: RunTimeEndian) -> Option<Option<Root>> {
        // gimli wants the whole unit; a truncated one gets a length that
        // says so (its real length is `self.length`).
        let mut bytes = Cow::Borrowed(bytes);
        if bytes.len() < self.length {
            let mut patched = bytes.into_owned();
            let (field, rest) = match patched.get(0..4)? {
                [0xff, 0xff, 0xff, 0xff] => (4..12, 12),
                _ => (0..4, 4),
            };
            let rest = (patched.len().checked_sub(rest)?) as u64;
            let encoded = match (endian, field.len()) {
                (RunTimeEndian::Little, 4) => u32::try_from(rest).ok()?.to_le_bytes().to_vec(),
                (RunTimeEndian::Big, 4) => u32::try_from(rest).ok()?.to_be_bytes().to_vec(),
                (RunTimeEndian::Little, _) => rest.to_le_bytes().to_vec(),
                (RunTimeEndian::Big, _) => rest.to_be_bytes().to_vec(),
            };
            patched.get_mut(field)?.copy_from_slice(&encoded);
            bytes = Cow::Owned(patched);
        }
        let header = gimli::DebugInfo::new(&bytes, endian).header_from_offset(gimli::DebugInfoOffset(0)).ok()?;
        match header.type_() {
            gimli::UnitType::Compilation => {}
            gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } | gimli::UnitType::Partial => {
                return Some(None);
            }
            _ => return None,
        }
        let mut entries = EndianSlice::new(bytes.get(header.header_size()..)?, endian);
        let code = entries.read_uleb128().ok()?;
        if code == 0 {
            // No root entry: gimli's `Unit` cannot be made; addr2line
            // skips the unit.
            return Some(None);
        }
        // Consecutive units often share a table and root abbreviation
        // (all of them after rustc's LTO): the last one is kept.
        let key = (header.debug_abbrev_offset().0, code);
        let cached = self.roots.borrow().as_ref().filter(|(k, _)| *k == key).map(|(_, a)| a.clone());
        let abbreviations = match cached {
            Some(cached) => cached?,
            None => {
                let parsed = abbreviation_bytes(dwarf.debug_abbrev.reader().slice(), key.0, code)
                    .and_then(|bytes| {
                        gimli::DebugAbbrev::new(&bytes, endian).abbreviations(gimli::DebugAbbrevOffset(0)).ok()
                    })
                    .map(Rc::new);
                *self.roots.borrow_mut() = Some((key, parsed.clone()));
                parsed?
            }
        };
        let mut entries = header.entries_raw(&abbreviations, None).ok()?;
        let entry = entries.read_abbreviation().ok()??;

        let encoding = header.encoding();
        let mut low_pc = None;
        let mut high_pc = None;
        let mut size = None;
        let mut ranges = None;
        let mut line_program = None;
        let mut addr_base = gimli::DebugAddrBase(0);
        let mut rnglists_base =
            gimli::DebugRngListsBase::default_for_encoding_and_file(encoding, gimli::DwarfFileType::Main);
        for spec in entry.attributes() {
            let attribute = entries.read_attribute(*spec).ok()?;
            match (attribute.name(), attribute.value()) {
                (gimli::DW_AT_low_pc, value) => low_pc = Some(value),
                (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(value)) => size = Some(value),
                (gimli::DW_AT_high_pc, value) => high_pc = Some(value),
                (gimli::DW_AT_ranges, value) => ranges = Some(value),
                (gimli::DW_AT_stmt_list, gimli::AttributeValue::DebugLineRef(offset)) => line_program = Some(offset.0),
                (gimli::DW_AT_addr_base | gimli::DW_AT_GNU_addr_base, gimli::AttributeValue::DebugAddrBase(base)) => {
                    addr_base = base;
                }
                (
                    gimli::DW_AT_rnglists_base | gimli::DW_AT_GNU_ranges_base,
                    gimli::AttributeValue::DebugRngListsBase(base),
                ) => {
                    rnglists_base = base;
                }
                // Split DWARF: the slow path (and addr2line) handle it.
                (gimli::DW_AT_GNU_dwo_id | gimli::DW_AT_dwo_name | gimli::DW_AT_GNU_dwo_name, _) => return None,
                _ => {}
            }
        }
        // gimli's `Unit` resolves the root's low_pc (its base address for
        // range lists); addr2line reads the attributes again for ranges.
        let address = |value| match value {
            gimli::AttributeValue::Addr(address) => Some(Some(address)),
            gimli::AttributeValue::DebugAddrIndex(index) => {
                dwarf.debug_addr.get_address(header.address_size(), addr_base, index).ok().map(Some)
            }
            _ => Some(None),
        };
        let declared = Declared {
            low_pc: match low_pc {
                Some(value) => address(value)?,
                None => None,
            },
            high_pc: match high_pc {
                Some(value) => address(value)?,
                None => None,
            },
            size,
            ranges: match ranges {
                Some(gimli::AttributeValue::RangeListsRef(raw)) => Some(gimli::RangeListsOffset(raw.0)),
                Some(gimli::AttributeValue::DebugRngListsIndex(index)) => {
                    Some(dwarf.ranges.get_offset(encoding, rnglists_base, index).ok()?)
                }
                _ => None,
            },
        };
        Some(Some(Root { declared, encoding, addr_base, line_program, endian }))
    }

    /// The ranges addr2line gives the unit whose root is `root`.
    fn ranges(
        &self,
        dwarf: &gimli::Dwarf<Reader<'_>>,
        parts: &Parts<'_>,
        root: Option<Root>,
    ) -> Result<Option<Outcome>, Fatal> {
        let Some(root) = root else {
            return Ok(Some(Outcome::Nothing));
        };
        let mut found = Vec::new();
        if root.declared.ranges.is_none() && self.aranges_ranges(dwarf, &mut found)? {
            return Ok(Some(Outcome::Ranges(found)));
        }
        if let Some(offset) = root.declared.ranges {
            let list = if root.encoding.version < 5 { parts.ranges } else { parts.rnglists };
            let low_pc = root.declared.low_pc.unwrap_or(0);
            read_range_list(dwarf, list, offset.0, root.encoding, low_pc, root.addr_base, &mut found)?;
        } else if let (Some(begin), Some(end)) = (root.declared.low_pc, root.declared.high_pc) {
            found.push((begin, end));
        } else if let (Some(begin), Some(size)) = (root.declared.low_pc, root.declared.size) {
            found.push((begin, begin.wrapping_add(size)));
        }
        found.retain(|&(begin, end)| begin < end);
        if found.is_empty()
            && let Some(offset) = root.line_program
        {
            // No declared ranges (rustc's codegen units after LTO, for
            // one): addr2line takes the line program's sequences.
            return Ok(
                read_line_sequences(parts.line, offset, root.encoding.address_size, root.endian).map(Outcome::Ranges)
            );
        }
        Ok(Some(Outcome::Ranges(found)))
    }

    /// Appends the unit's `.debug_aranges` entries; `false` when it has
    /// none that addr2line would use.
    fn aranges_ranges(&self, dwarf: &gimli::Dwarf<Reader<'_>>, found: &mut Vec<(u64, u64)>) -> Result<bool, Fatal> {
        let first = self.aranges.partition_point(|a| a.0 < self.offset);
        let mut used = false;
        for &(_, set) in self.aranges[first..].iter().take_while(|a| a.0 == self.offset) {
            let mut entries = dwarf.debug_aranges.header(set).map_err(|_| Fatal)?.entries();
            while let Some(entry) = entries.next().map_err(|_| Fatal)? {
                if entry.length() != 0 {
                    found.push((entry.range().begin, entry.range().end));
                    used = true;
                }
            }
        }
        Ok(used)
    }

    /// What addr2line does for this unit, through gimli's `Unit` (which
    /// reads the mapped sections).
    fn slow(&self, dwarf: &gimli::Dwarf<Reader<'_>>) -> Result<Outcome, Fatal> {
        let header = dwarf.debug_info.header_from_offset(gimli::DebugInfoOffset(self.offset)).map_err(|_| Fatal)?;
        match header.type_() {
            gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } | gimli::UnitType::Partial => {
                return Ok(Outcome::Nothing);
            }
            _ => {}
        }
        // addr2line skips units it cannot parse.
        let Ok(unit) = dwarf.unit(header) else {
            return Ok(Outcome::Nothing);
        };
        let unit = gimli::UnitRef::new(dwarf, &unit);
        let mut entries = unit.entries_raw(None).map_err(|_| Fatal)?;
        let Some(root) = entries.read_abbreviation().map_err(|_| Fatal)? else {
            return Ok(Outcome::Nothing);
        };
        let mut declared = Declared::default();
        for spec in root.attributes() {
            let attribute = entries.read_attribute(*spec).map_err(|_| Fatal)?;
            match (attribute.name(), attribute.value()) {
                (gimli::DW_AT_low_pc, gimli::AttributeValue::Addr(address)) => declared.low_pc = Some(address),
                (gimli::DW_AT_low_pc, gimli::AttributeValue::DebugAddrIndex(index)) => {
                    declared.low_pc = Some(unit.address(index).map_err(|_| Fatal)?);
                }
                (gimli::DW_AT_high_pc, gimli::AttributeValue::Addr(address)) => declared.high_pc = Some(address),
                (gimli::DW_AT_high_pc, gimli::AttributeValue::DebugAddrIndex(index)) => {
                    declared.high_pc = Some(unit.address(index).map_err(|_| Fatal)?);
                }
                (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(size)) => declared.size = Some(size),
                (gimli::DW_AT_ranges, value) => declared.ranges = unit.attr_ranges_offset(value).map_err(|_| Fatal)?,
                _ => {}
            }
        }
        let mut found = Vec::new();
        if declared.ranges.is_none() && self.aranges_ranges(dwarf, &mut found)? {
            return Ok(Outcome::Ranges(found));
        }
        if let Some(offset) = declared.ranges {
            let mut list = unit.ranges(offset).map_err(|_| Fatal)?;
            while let Some(range) = list.next().map_err(|_| Fatal)? {
                found.push((range.begin, range.end));
            }
        } else if let (Some(begin), Some(end)) = (declared.low_pc, declared.high_pc) {
            found.push((begin, end));
        } else if let (Some(begin), Some(size)) = (declared.low_pc, declared.size) {
            found.push((begin, begin.wrapping_add(size)));
        }
        found.retain(|&(begin, end)| begin < end);
        if found.is_empty()
            && let Some(program) = unit.line_program.clone()
        {
            // addr2line ignores a line program it cannot read; the unit
            // then has no ranges, but saying "everywhere" is never wrong.
            return Ok(match line_sequences(program) {
                Ok(sequences) => Outcome::Ranges(sequences),
                Err(_) => Outcome::Everywhere,
            });
        }
        Ok(Outcome::Ranges(found))
    }
}

/// What the fast path read from a root entry.
struct Root {
    declared: Declared,
    encoding: gimli::Encoding,
    addr_base: gimli::DebugAddrBase,
    /// Offset of its line program.
    line_program: Option<usize>,
    endian: RunTimeEndian,
}

/// Appends the ranges of the list at `offset` of `list`, read in growing
/// pieces.
fn read_range_list(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    list: Section<'_>,
    offset: usize,
    encoding: gimli::Encoding,
    base_address: u64,
    addr_base: gimli::DebugAddrBase,
    found: &mut Vec<(u64, u64)>,
) -> Result<(), Fatal> {
    let endian = dwarf.debug_addr.reader().endian();
    let parse = |bytes: &[u8]| -> gimli::Result<Vec<(u64, u64)>> {
        let lists =
            gimli::RangeLists::new(gimli::DebugRanges::new(bytes, endian), gimli::DebugRngLists::new(bytes, endian));
        let mut entries =
            lists.ranges(gimli::RangeListsOffset(0), encoding, base_address, &dwarf.debug_addr, addr_base)?;
        let mut ranges = Vec::new();
        while let Some(range) = entries.next()? {
            ranges.push((range.begin, range.end));
        }
        Ok(ranges)
    };
    let mut size = LIST_READ;
    loop {
        let piece = list.read(offset, size).ok_or(Fatal)?;
        if offset + piece.len() >= list.len() {
            // The rest of the section: as addr2line reads it (an error
            // there stops addr2line too).
            found.extend(parse(&piece).map_err(|_| Fatal)?);
            return Ok(());
        }
        // gimli ends a list at the end of its input as at its terminator:
        // the list was whole only if one byte less reads the same.
        if let (Ok(ranges), Ok(shorter)) = (parse(&piece), parse(&piece[..piece.len() - 1]))
            && ranges == shorter
        {
            found.extend(ranges);
            return Ok(());
        }
        size = size.saturating_mul(4);
    }
}

/// The sequences of the line program at `offset` of `.debug_line`, read
/// whole into a buffer; `None` if it cannot be read (the slow path then
/// tries as addr2line would).
fn read_line_sequences(
    line: Section<'_>,
    offset: usize,
    address_size: u8,
    endian: RunTimeEndian,
) -> Option<Vec<(u64, u64)>> {
    let length = unit_length(&line.read(offset, 12)?, endian)?;
    let bytes = line.read(offset, length)?;
    let program =
        gimli::DebugLine::new(&bytes, endian).program(gimli::DebugLineOffset(0), address_size, None, None).ok()?;
    line_sequences(program).ok()
}

/// The address range of each sequence of a line program, as addr2line
/// delimits them.
fn line_sequences(program: gimli::IncompleteLineProgram<Reader<'_>>) -> gimli::Result<Vec<(u64, u64)>> {
    let mut sequences = Vec::new();
    let mut rows = program.rows();
    let mut start = None;
    while let Some((_, row)) = rows.next_row()? {
        if row.end_sequence() {
            if let Some(start) = start.take() {
                sequences.push((start, row.address()));
            }
        } else if start.is_none() {
            start = Some(row.address());
        }
    }
    Ok(sequences)
}

/// The bytes of the abbreviation `code` in the table at `offset` of
/// `.debug_abbrev`, followed by the table's terminating 0: a table of one
/// for gimli to parse, instead of parsing the unit's whole table.
fn abbreviation_bytes(abbrev: &[u8], offset: usize, code: u64) -> Option<Vec<u8>> {
    let table = abbrev.get(offset..)?;
    let mut input = EndianSlice::new(table, RunTimeEndian::Little);
    loop {
        let start = table.len() - input.len();
        let found = input.read_uleb128().ok()?;
        if found == 0 {
            return None;
        }
        input.read_uleb128().ok()?; // tag
        input.read_u8().ok()?; // children
        loop {
            let name = input.read_uleb128().ok()?;
            let form = input.read_uleb128().ok()?;
            if form == u64::from(gimli::DW_FORM_implicit_const.0) {
                input.read_sleb128().ok()?;
            }
            if name == 0 && form == 0 {
                break;
            }
        }
        if found == code {
            let end = table.len() - input.len();
            let mut bytes = table[start..end].to_vec();
            bytes.push(0);
            return Some(bytes);
        }
    }
}
