//! The bytes of one DWARF section, two ways: as a slice (what addr2line
//! and gimli read), and as a source of copies of small parts of it.
//!
//! Reading through the slice of a mapped file makes the whole page-cache
//! folio around each touched byte part of this process's memory. Work that
//! visits one spot in every compilation unit (the unit index) or copies
//! units (the partial contexts) reads through [`Section::read`] instead:
//! `pread` for sections stored plain, a borrow for decompressed ones.

use std::borrow::Cow;

use crate::sys::mapped::Mapped;

#[derive(Clone, Copy)]
pub(crate) struct Section<'d> {
    /// The whole section (empty when absent or undecodable).
    pub bytes: &'d [u8],
    /// Where `bytes` are when they are stored plain in a file: read copies
    /// from it rather than touch the mapping.
    pub file: Option<(&'d Mapped, u64)>,
}

impl<'d> Section<'d> {
    pub(crate) const EMPTY: Section<'static> = Section { bytes: &[], file: None };

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Up to `len` bytes from `start` (fewer at the end of the section).
    pub(crate) fn read(&self, start: usize, len: usize) -> Option<Cow<'d, [u8]>> {
        let end = start.checked_add(len)?.min(self.bytes.len());
        let start = start.min(end);
        match self.file {
            None => Some(Cow::Borrowed(&self.bytes[start..end])),
            Some((file, offset)) => {
                let mut buffer = vec![0; end - start];
                file.read_at(offset.checked_add(start as u64)?, &mut buffer).ok()?;
                Some(Cow::Owned(buffer))
            }
        }
    }

    /// Copies `destination.len()` bytes from `start`.
    pub(crate) fn read_into(&self, start: usize, destination: &mut [u8]) -> Option<()> {
        let end = start.checked_add(destination.len())?;
        match self.file {
            None => destination.copy_from_slice(self.bytes.get(start..end)?),
            Some((file, offset)) => {
                if end > self.bytes.len() {
                    return None;
                }
                file.read_at(offset.checked_add(start as u64)?, destination).ok()?;
            }
        }
        Some(())
    }
}
