//! The bounded memory of what the child printed last.
//!
//! The ring keeps raw chunks as they were read, not lines: splitting a
//! gigabyte of output into lines as it streams past would cost an allocation
//! per line on the hot path, while the lines are wanted only once, when the
//! child dies. Chunks are kept while they are needed to hold the last
//! `max_lines` lines and fit in `max_bytes`; [`Ring::snapshot`] cuts them into
//! lines, per stream, in arrival order.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Which of the child's pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Limits of the ring.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// At most this many lines are kept.
    pub max_lines: usize,
    /// At most this many bytes of output are kept, all lines together.
    pub max_bytes: usize,
    /// A longer line is cut to this many bytes in a snapshot.
    pub max_line_bytes: usize,
}

/// One line of the child's output, as kept for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When crashwatch read the chunk that completed the line.
    pub at: SystemTime,
    pub stream: Stream,
    /// The line without its newline, at most `max_line_bytes` long.
    pub bytes: Vec<u8>,
    /// How many bytes of the line are not in `bytes`: cut for length, or
    /// dropped from the ring before the line was complete.
    pub omitted: usize,
    /// False for the last line of a stream that ended without a newline.
    pub newline: bool,
}

#[derive(Debug)]
struct Chunk {
    at: SystemTime,
    stream: Stream,
    data: Vec<u8>,
    /// Bytes of `data` before this were evicted (the chunk's head was
    /// trimmed to keep the ring within `max_bytes`).
    start: usize,
    /// Newlines in `data[start..]`.
    newlines: usize,
}

impl Chunk {
    fn live(&self) -> &[u8] {
        &self.data[self.start..]
    }
}

/// The ring. Not synchronised: the pumps share it behind a mutex and push
/// one chunk per read, so the lock is taken once per read, not per line.
#[derive(Debug)]
pub struct Ring {
    limits: RingLimits,
    chunks: VecDeque<Chunk>,
    bytes: usize,
    newlines: usize,
    /// Per stream: bytes of the stream's oldest kept line that were evicted.
    dropped_head: [usize; 2],
    /// Evicted buffers, reused so that a steady stream allocates nothing.
    spare: Vec<Vec<u8>>,
}

impl Ring {
    pub fn new(limits: RingLimits) -> Ring {
        Ring { limits, chunks: VecDeque::new(), bytes: 0, newlines: 0, dropped_head: [0; 2], spare: Vec::new() }
    }

    /// Records bytes read from `stream` at `at`.
    pub fn push(&mut self, stream: Stream, at: SystemTime, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // A read larger than the whole ring: only its end can be kept, and
        // everything older goes first (the order matters to `note_dropped`).
        if bytes.len() > self.limits.max_bytes {
            while self.drop_front() {}
            let (dropped, kept) = bytes.split_at(bytes.len() - self.limits.max_bytes);
            self.note_dropped(stream, dropped);
            bytes = kept;
        }
        let newlines = memchr::memchr_iter(b'\n', bytes).count();
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(bytes);
        self.bytes += data.len();
        self.newlines += newlines;
        self.chunks.push_back(Chunk { at, stream, data, start: 0, newlines });
        self.evict();
    }

    /// Drops the oldest chunks while the rest still hold `max_lines` lines,
    /// or while the ring is over `max_bytes`.
    /// Over `max_bytes`, the oldest chunk loses only its head, as much as
    /// needed: dropping it whole could leave a few bytes of a ring that may
    /// hold `max_bytes` (a 256 KiB read followed by a 10-byte one).
    fn evict(&mut self) {
        while let Some(front) = self.chunks.front() {
            let lines_without = self.newlines - front.newlines;
            // `>`: the newest line may still be incomplete, so keep one
            // newline more than the lines asked for.
            if lines_without > self.limits.max_lines {
                self.drop_front();
                continue;
            }
            if self.bytes <= self.limits.max_bytes {
                break;
            }
            let excess = self.bytes - self.limits.max_bytes;
            if excess >= front.live().len() {
                self.drop_front();
                continue;
            }
            let (stream, cut) = (front.stream, front.start..front.start + excess);
            let cut_newlines = memchr::memchr_iter(b'\n', &front.data[cut.clone()]).count();
            let last_newline = memchr::memrchr(b'\n', &front.data[cut.clone()]);
            self.account_dropped(stream, excess, last_newline);
            let front = self.chunks.front_mut().expect("front exists");
            front.start = cut.end;
            front.newlines -= cut_newlines;
            self.bytes -= excess;
            self.newlines -= cut_newlines;
            break;
        }
    }

    /// Drops the oldest chunk; false when there was none.
    fn drop_front(&mut self) -> bool {
        let Some(chunk) = self.chunks.pop_front() else { return false };
        self.bytes -= chunk.live().len();
        self.newlines -= chunk.newlines;
        self.note_dropped(chunk.stream, chunk.live());
        if self.spare.len() < 4 {
            self.spare.push(chunk.data);
        }
        true
    }

    /// Accounts for `dropped`, the oldest bytes of `stream` still held,
    /// leaving the ring: they are the head of the stream's oldest kept line.
    fn note_dropped(&mut self, stream: Stream, dropped: &[u8]) {
        self.account_dropped(stream, dropped.len(), memchr::memrchr(b'\n', dropped));
    }

    /// [`Ring::note_dropped`] for `len` bytes whose last newline is at
    /// `last_newline`.
    fn account_dropped(&mut self, stream: Stream, len: usize, last_newline: Option<usize>) {
        let head = &mut self.dropped_head[stream.index()];
        match last_newline {
            Some(i) => *head = len - i - 1,
            None => *head += len,
        }
    }

    /// The last lines, oldest first, within the limits. A stream's final
    /// bytes without a newline count as a line (`newline: false`).
    pub fn snapshot(&self) -> Vec<Line> {
        let cap = self.limits.max_line_bytes;
        let mut open: [Option<Line>; 2] = [None, None];
        let mut lines = Vec::new();
        let mut seen = [false; 2];
        for chunk in &self.chunks {
            let s = chunk.stream.index();
            let mut rest = chunk.live();
            while !rest.is_empty() {
                let (piece, done) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], true),
                    None => (rest, false),
                };
                rest = if done { &rest[piece.len() + 1..] } else { &[] };
                let line = open[s].get_or_insert_with(|| Line {
                    at: chunk.at,
                    stream: chunk.stream,
                    bytes: Vec::new(),
                    // The first line of a stream lost its head if older
                    // chunks of it were evicted mid-line.
                    omitted: if seen[s] { 0 } else { self.dropped_head[s] },
                    newline: true,
                });
                seen[s] = true;
                let room = cap.saturating_sub(line.bytes.len());
                let take = piece.len().min(room);
                line.bytes.extend_from_slice(&piece[..take]);
                line.omitted += piece.len() - take;
                if done {
                    let mut line = open[s].take().expect("line is open");
                    line.at = chunk.at;
                    lines.push(line);
                }
            }
        }
        for line in open.into_iter().flatten() {
            lines.push(Line { newline: false, ..line });
        }
        // Eviction keeps whole chunks, so there may be more than asked for.
        let mut start = lines.len().saturating_sub(self.limits.max_lines);
        let mut total: usize = lines[start..].iter().map(|l| l.bytes.len()).sum();
        while total > self.limits.max_bytes && start < lines.len() {
            total -= lines[start].bytes.len();
            start += 1;
        }
        lines.split_off(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_lines: usize, max_bytes: usize) -> RingLimits {
        RingLimits { max_lines, max_bytes, max_line_bytes: 16 }
    }

    fn texts(ring: &Ring) -> Vec<String> {
        ring.snapshot().iter().map(|l| String::from_utf8_lossy(&l.bytes).into_owned()).collect()
    }

    #[test]
    fn keeps_the_last_lines_across_chunks() {
        let mut ring = Ring::new(limits(3, 1000));
        let now = SystemTime::now();
        ring.push(Stream::Stdout, now, b"one\ntwo\nthr");
        ring.push(Stream::Stdout, now, b"ee\nfour\n");
        ring.push(Stream::Stdout, now, b"five\n");
        assert_eq!(texts(&ring), ["three", "four", "five"]);
    }

    #[test]
    fn interleaves_streams_in_completion_order_and_keeps_partial_lines() {
        let mut ring = Ring::new(limits(10, 1000));
        let now = SystemTime::now();
        ring.push(Stream::Stdout, now, b"out-a");
        ring.push(Stream::Stderr, now, b"err-1\n");
        ring.push(Stream::Stdout, now, b"-b\n");
        ring.push(Stream::Stderr, now, b"no newline");
        let snap = ring.snapshot();
        let got: Vec<_> =
            snap.iter().map(|l| (l.stream, String::from_utf8_lossy(&l.bytes).into_owned(), l.newline)).collect();
        assert_eq!(
            got,
            [
                (Stream::Stderr, "err-1".to_string(), true),
                (Stream::Stdout, "out-a-b".to_string(), true),
                (Stream::Stderr, "no newline".to_string(), false),
            ]
        );
    }

    #[test]
    fn cuts_long_lines_and_counts_what_was_cut() {
        let mut ring = Ring::new(limits(10, 1000));
        ring.push(Stream::Stdout, SystemTime::now(), &[b'x'; 40]);
        ring.push(Stream::Stdout, SystemTime::now(), b"\n");
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].bytes, vec![b'x'; 16]);
        assert_eq!(snap[0].omitted, 24);
    }

    #[test]
    fn byte_limit_evicts_old_chunks_and_marks_the_lost_head() {
        let mut ring = Ring::new(RingLimits { max_lines: 100, max_bytes: 10, max_line_bytes: 100 });
        let now = SystemTime::now();
        // One 30-byte line in three chunks: only the last chunk fits.
        ring.push(Stream::Stdout, now, b"aaaaaaaaaa");
        ring.push(Stream::Stdout, now, b"bbbbbbbbbb");
        ring.push(Stream::Stdout, now, b"cccccccc\nd");
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].bytes, b"cccccccc");
        assert_eq!(snap[0].omitted, 20);
        assert_eq!(snap[1].bytes, b"d");
        assert!(!snap[1].newline);
    }

    #[test]
    fn a_chunk_larger_than_the_ring_keeps_its_end() {
        let mut ring = Ring::new(RingLimits { max_lines: 100, max_bytes: 8, max_line_bytes: 100 });
        ring.push(Stream::Stderr, SystemTime::now(), b"old\nxxxxxxxxxxyyyy\nzz");
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].bytes.as_slice(), snap[0].omitted), (b"xyyyy".as_slice(), 9));
        assert_eq!((snap[1].bytes.as_slice(), snap[1].newline), (b"zz".as_slice(), false));
    }

    #[test]
    fn an_oversized_read_after_a_line_counts_every_lost_byte() {
        // Regression: the oversized read's lost head was counted before an
        // older chunk with a newline was evicted, which reset the count.
        let mut ring = Ring::new(RingLimits { max_lines: 100, max_bytes: 8, max_line_bytes: 100 });
        ring.push(Stream::Stdout, SystemTime::now(), b"a\nxx");
        ring.push(Stream::Stdout, SystemTime::now(), &[b'x'; 20]);
        ring.push(Stream::Stdout, SystemTime::now(), b"\n");
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].bytes.len() + snap[0].omitted, 22);
    }

    #[test]
    fn a_small_read_after_a_full_ring_trims_the_old_chunk_instead_of_dropping_it() {
        // Regression: whole-chunk eviction left 2 of 10 allowed bytes here
        // (and 14 bytes of a 50 MB line in a report, under load).
        let mut ring = Ring::new(RingLimits { max_lines: 100, max_bytes: 10, max_line_bytes: 100 });
        ring.push(Stream::Stdout, SystemTime::now(), b"xxxxxxxxxx");
        ring.push(Stream::Stdout, SystemTime::now(), b"ab\ncd");
        assert_eq!(ring.bytes, 10);
        let snap = ring.snapshot();
        assert_eq!((snap[0].bytes.as_slice(), snap[0].omitted), (b"xxxxxab".as_slice(), 5));
        assert_eq!(snap[1].bytes, b"cd");
    }

    #[test]
    fn trimming_keeps_line_counts_right() {
        let mut ring = Ring::new(RingLimits { max_lines: 2, max_bytes: 8, max_line_bytes: 100 });
        ring.push(Stream::Stderr, SystemTime::now(), b"a\nb\nc\nd");
        ring.push(Stream::Stderr, SystemTime::now(), b"e\nf\n");
        // "d" and "e" are one line of the stream: the chunks split it.
        assert_eq!(texts(&ring), ["de", "f"]);
        assert_eq!(
            ring.newlines,
            ring.chunks.iter().map(|c| memchr::memchr_iter(b'\n', c.live()).count()).sum::<usize>()
        );
    }

    #[test]
    fn many_small_chunks_stay_bounded() {
        let mut ring = Ring::new(limits(5, 1 << 20));
        let now = SystemTime::now();
        for i in 0..10_000 {
            ring.push(Stream::Stderr, now, format!("line {i}\n").as_bytes());
        }
        assert!(ring.chunks.len() <= 6, "{} chunks kept", ring.chunks.len());
        assert_eq!(texts(&ring), ["line 9995", "line 9996", "line 9997", "line 9998", "line 9999"]);
    }

    #[test]
    fn bytes_are_not_required_to_be_utf8() {
        let mut ring = Ring::new(limits(5, 100));
        ring.push(Stream::Stdout, SystemTime::now(), b"\xff\xfe\x00bin\n");
        assert_eq!(ring.snapshot()[0].bytes, b"\xff\xfe\x00bin");
    }
}
