//! A file copied into an envelope with some of its bytes replaced and more
//! appended, without changing the file: how a minidump kept on the host is
//! sent scrubbed of secrets.

use std::io::{self, Write};

/// Changes made to a file's bytes while it is copied: `patches` overwrite
/// bytes in place (sorted by offset, not overlapping, within the file), then
/// `appended` follows the file's last byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `(offset, bytes)` written over the file's bytes at `offset`.
    pub patches: Vec<(u64, Vec<u8>)>,
    /// Bytes added after the end of the file.
    pub appended: Vec<u8>,
}

impl Rewrite {
    /// A writer that passes the file's bytes, written in order from its
    /// start, on to `inner` with the patches applied.
    pub(super) fn patching<'a, W: Write>(&'a self, inner: &'a mut W) -> PatchingWriter<'a, W> {
        PatchingWriter { inner, at: 0, patches: &self.patches }
    }
}

/// Writes what it is given with the patches that overlap it applied; `at`
/// is the offset in the source of the next byte.
pub(super) struct PatchingWriter<'a, W: Write> {
    inner: &'a mut W,
    at: u64,
    patches: &'a [(u64, Vec<u8>)],
}

impl<W: Write> Write for PatchingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (start, end) = (self.at, self.at + buf.len() as u64);
        let mut overlapping = self.patches.iter().filter(|(o, b)| *o < end && o + b.len() as u64 > start).peekable();
        if overlapping.peek().is_none() {
            self.inner.write_all(buf)?;
        } else {
            let mut chunk = buf.to_vec();
            for (offset, bytes) in overlapping {
                let from = offset.max(&start) - start;
                let to = (offset + bytes.len() as u64).min(end) - start;
                let skip = (start + from - offset) as usize;
                chunk[from as usize..to as usize].copy_from_slice(&bytes[skip..skip + (to - from) as usize]);
            }
            self.inner.write_all(&chunk)?;
        }
        self.at = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{EVENT_ID, at, dsn};
    use super::super::{Attachment, AttachmentSource, Envelope, MinidumpProcessing, RawEnvelope};
    use super::*;

    #[test]
    fn a_rewritten_file_is_sent_patched_and_extended_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump");
        let original: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        // Patches at the start, across io::copy's 8 KiB chunks, at the end.
        let rewrite = Rewrite {
            patches: vec![(0, b"AB".to_vec()), (8190, b"xyzw".to_vec()), (19_998, b"!!".to_vec())],
            appended: b"tail".to_vec(),
        };
        let attachment = Attachment::minidump(
            "minidump.dmp",
            AttachmentSource::Rewritten(path.clone(), rewrite),
            MinidumpProcessing::Host,
        );
        assert_eq!(attachment.len().unwrap(), 20_004);
        assert!(attachment.is_minidump());
        let mut envelope = Envelope::new(EVENT_ID.parse().unwrap(), serde_json::json!({})).unwrap();
        envelope.add_attachment(attachment).unwrap();
        let bytes = envelope.to_vec(&dsn(), at(1)).unwrap();
        let raw = RawEnvelope::parse(&bytes).unwrap();
        assert_eq!(raw.items[1].header["attachment_type"], "event.attachment");
        assert_eq!(raw.items[1].header["content_type"], "application/x-dmp");
        assert!(raw.items[1].is_minidump());
        let mut expected = original.clone();
        expected[0..2].copy_from_slice(b"AB");
        expected[8190..8194].copy_from_slice(b"xyzw");
        expected[19_998..].copy_from_slice(b"!!");
        expected.extend_from_slice(b"tail");
        assert_eq!(raw.items[1].payload, expected);
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }
}
