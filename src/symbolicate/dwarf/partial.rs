//! A copy of `.debug_info` that holds only some units, at their offsets.
//!
//! The copy is an anonymous zero-filled mapping the size of the section:
//! only the pages written to cost memory. The units are read into it (with
//! `pread` for a section stored plain in a file), and each run of left-out
//! units becomes one placeholder unit header whose abbreviation offset is
//! past any `.debug_abbrev`: addr2line cannot parse such a unit and skips
//! it, so it never looks inside.
//!
//! Which units: those that may cover the address (from the unit index),
//! plus every unit that a chain of `DW_AT_abstract_origin` /
//! `DW_AT_specification` starting in them reaches. Those chains are the
//! only references across units that addr2line follows (to name
//! functions); with ThinLTO, rustc's inlined functions point into other
//! codegen units all the time. A reference that still lands outside the
//! copy makes addr2line fail, and the caller then asks the whole file.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use addr2line::gimli::{self, Reader as _, RunTimeEndian};

use super::index::{UnitIndex, unit_length};
use super::section::Section;

/// addr2line follows a function's name through at most this many
/// references (its recursion limit is 16).
const NAME_DEPTH: u32 = 17;
/// Bounds on the work of choosing the units (entries read, units kept);
/// past them the caller uses the whole file.
const MAX_ENTRIES: usize = 2_000_000;
const MAX_UNITS: usize = 512;
/// The smallest placeholder: a DWARF 4 unit header (length, version,
/// abbreviation offset, address size).
const PLACEHOLDER_LEN: usize = 4 + 2 + 4 + 1;

/// The partial copy of `info` for an address that the units at `offsets`
/// may cover.
pub(crate) fn copy(
    info: Section<'_>,
    abbrev: &[u8],
    index: &UnitIndex,
    offsets: &[usize],
    endian: RunTimeEndian,
) -> Option<memmap2::Mmap> {
    let mut copy = memmap2::MmapMut::map_anon(info.len()).ok()?;
    let abbrev_bytes = abbrev;
    let abbrev = gimli::DebugAbbrev::new(abbrev, endian);
    let mut kept = BTreeMap::new();
    let mut budget = MAX_ENTRIES;
    // (offset of an entry whose name references matter, depth left)
    let mut pending = Vec::new();
    // Parsed abbreviation tables, by offset: units often share one.
    let mut abbreviations: HashMap<usize, gimli::Abbreviations> = HashMap::new();
    let mut crossings: HashMap<usize, Vec<u8>> = HashMap::new();

    // Every entry of the units that may cover the address may be a
    // function addr2line names: all their references count.
    for &start in offsets {
        let end = take(info, &mut copy, &mut kept, start, endian)?;
        let section = gimli::DebugInfo::new(&copy[..end], endian);
        let header = section.header_from_offset(gimli::DebugInfoOffset(start)).ok()?;
        if !may_cross_units(abbrev_bytes, header.debug_abbrev_offset().0) {
            // No entry of this unit can refer to another unit.
            continue;
        }
        let table = header.debug_abbrev_offset().0;
        let abbreviations = match abbreviations.entry(table) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(header.abbreviations(&abbrev).ok()?),
        };
        // Per abbreviation code: 0 not seen yet, 1 no reference to another
        // unit, 2 one (only `DW_FORM_ref_addr` leads to another unit).
        let crossing = crossings.entry(table).or_default();
        let mut entries = header.entries_raw(abbreviations, None).ok()?;
        while !entries.is_empty() {
            budget = budget.checked_sub(1)?;
            let Some(entry) = entries.read_abbreviation().ok()? else {
                continue;
            };
            let code = usize::try_from(entry.code()).ok()?;
            if crossing.len() <= code {
                crossing.resize(code + 1, 0);
            }
            if crossing[code] == 0 {
                let crosses = entry
                    .attributes()
                    .iter()
                    .any(|spec| is_name_reference(spec.name()) && spec.form() == gimli::DW_FORM_ref_addr);
                crossing[code] = if crosses { 2 } else { 1 };
            }
            if crossing[code] == 1 {
                // Skipped without decoding the values.
                entries.skip_attributes(entry.attributes()).ok()?;
                continue;
            }
            for spec in entry.attributes() {
                let attribute = entries.read_attribute(*spec).ok()?;
                if is_name_reference(attribute.name())
                    && let gimli::AttributeValue::DebugInfoRef(target) = attribute.value()
                {
                    pending.push((target.0, NAME_DEPTH));
                }
            }
        }
    }

    // Elsewhere only the entries on those chains are read.
    let mut visited = HashSet::new();
    while let Some((offset, depth)) = pending.pop() {
        if depth == 0 || !visited.insert(offset) {
            continue;
        }
        budget = budget.checked_sub(1)?;
        let start = index.unit_before(offset)?;
        if offsets.contains(&start) {
            // Read whole above.
            continue;
        }
        let end = match kept.get(&start) {
            Some(&end) => end,
            None => {
                if kept.len() >= MAX_UNITS {
                    return None;
                }
                take(info, &mut copy, &mut kept, start, endian)?
            }
        };
        let section = gimli::DebugInfo::new(&copy[..end], endian);
        let header = section.header_from_offset(gimli::DebugInfoOffset(start)).ok()?;
        let at = gimli::DebugInfoOffset(offset).to_unit_offset(&header)?;
        let abbreviations = match abbreviations.entry(header.debug_abbrev_offset().0) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(header.abbreviations(&abbrev).ok()?),
        };
        let mut entries = header.entries_raw(abbreviations, Some(at)).ok()?;
        let entry = entries.read_abbreviation().ok()??;
        for spec in entry.attributes() {
            let attribute = entries.read_attribute(*spec).ok()?;
            if !is_name_reference(attribute.name()) {
                continue;
            }
            match attribute.value() {
                gimli::AttributeValue::UnitRef(target) => {
                    pending.push((target.to_debug_info_offset(&header)?.0, depth - 1));
                }
                gimli::AttributeValue::DebugInfoRef(target) => pending.push((target.0, depth - 1)),
                _ => {}
            }
        }
    }

    let mut position = 0;
    for (&start, &end) in kept.iter().chain(std::iter::once((&info.len(), &info.len()))) {
        if start > position {
            placeholder(&mut copy[position..start], endian)?;
        }
        position = end;
    }
    copy.make_read_only().ok()
}

/// Reads the unit at `start` into `copy`; its end.
fn take(
    info: Section<'_>,
    copy: &mut [u8],
    kept: &mut BTreeMap<usize, usize>,
    start: usize,
    endian: RunTimeEndian,
) -> Option<usize> {
    let length = unit_length(&info.read(start, 12)?, endian)?;
    let end = start.checked_add(length).filter(|&end| end <= info.len())?;
    info.read_into(start, copy.get_mut(start..end)?)?;
    kept.insert(start, end);
    Some(end)
}

/// Whether the abbreviation table at `offset` has an entry with a name
/// reference in `DW_FORM_ref_addr`, the one form that reaches other units
/// (GCC never emits it without LTO; rustc with ThinLTO does). Unsure
/// (a malformed table) counts as yes.
fn may_cross_units(abbrev: &[u8], offset: usize) -> bool {
    let Some(table) = abbrev.get(offset..) else {
        return true;
    };
    let mut input = gimli::EndianSlice::new(table, RunTimeEndian::Little);
    let mut scan = || -> gimli::Result<bool> {
        while input.read_uleb128()? != 0 {
            input.read_uleb128()?; // tag
            input.read_u8()?; // children
            loop {
                let name = input.read_uleb128()?;
                let form = input.read_uleb128()?;
                if form == u64::from(gimli::DW_FORM_implicit_const.0) {
                    input.read_sleb128()?;
                }
                if name == 0 && form == 0 {
                    break;
                }
                let reference = name == u64::from(gimli::DW_AT_abstract_origin.0)
                    || name == u64::from(gimli::DW_AT_specification.0);
                if reference && form == u64::from(gimli::DW_FORM_ref_addr.0) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    scan().unwrap_or(true)
}

fn is_name_reference(name: gimli::DwAt) -> bool {
    name == gimli::DW_AT_abstract_origin || name == gimli::DW_AT_specification
}

/// Writes a unit header that covers all of `gap` and that addr2line
/// skips: its abbreviation table offset is past any `.debug_abbrev`.
fn placeholder(gap: &mut [u8], endian: RunTimeEndian) -> Option<()> {
    if gap.len() < PLACEHOLDER_LEN {
        return None;
    }
    let length = u32::try_from(gap.len() - 4).ok().filter(|&l| l < 0xffff_fff0)?;
    let (length, version, abbrev) = match endian {
        RunTimeEndian::Little => (length.to_le_bytes(), 4u16.to_le_bytes(), u32::MAX.to_le_bytes()),
        RunTimeEndian::Big => (length.to_be_bytes(), 4u16.to_be_bytes(), u32::MAX.to_be_bytes()),
    };
    gap[0..4].copy_from_slice(&length);
    gap[4..6].copy_from_slice(&version);
    gap[6..10].copy_from_slice(&abbrev);
    gap[10] = 8; // address size
    Some(())
}
