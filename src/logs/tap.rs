//! The tap: a copy of what the pumps read, handed to a worker thread that
//! looks for problems in it (`crate::live` reads the other end).
//!
//! The pumps are the hot path: the child blocks when they fall behind. So
//! the tap never waits. Each chunk read is offered once; when the worker has
//! more than [`MAX_IN_FLIGHT`] bytes it has not taken yet (it is slower than
//! the child's output), the chunk is dropped and counted, and the next chunk
//! of that stream says a gap came before it, so that the worker never joins
//! two halves of different lines. Memory is bounded by that many bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

use super::Stream;

/// Bytes offered to the worker and not yet taken by it, at most.
pub const MAX_IN_FLIGHT: usize = 16 << 20;

/// Chunks in the channel at most (a second bound beside the bytes: many
/// small reads must not grow the channel without limit either).
const MAX_CHUNKS: usize = 4096;

/// One read of the child's output.
#[derive(Debug)]
pub struct Chunk {
    pub stream: Stream,
    pub at: SystemTime,
    pub bytes: Vec<u8>,
    /// Chunks of this stream were dropped just before this one.
    pub after_gap: bool,
}

/// What the tap dropped because the worker was behind.
#[derive(Debug, Default)]
pub struct Dropped {
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
}

/// The pumps' end of the tap; one clone per pump.
#[derive(Debug, Clone)]
pub struct Tap {
    tx: SyncSender<Chunk>,
    in_flight: Arc<AtomicUsize>,
    dropped: Arc<Dropped>,
    gap: bool,
}

/// The worker's end.
#[derive(Debug)]
pub struct TapReceiver {
    rx: Receiver<Chunk>,
    in_flight: Arc<AtomicUsize>,
    dropped: Arc<Dropped>,
}

/// A new tap and its receiving end.
pub fn tap() -> (Tap, TapReceiver) {
    let (tx, rx) = mpsc::sync_channel(MAX_CHUNKS);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(Dropped::default());
    let tap = Tap { tx, in_flight: Arc::clone(&in_flight), dropped: Arc::clone(&dropped), gap: false };
    (tap, TapReceiver { rx, in_flight, dropped })
}

impl Tap {
    /// Offers a copy of `bytes`; never blocks.
    pub fn offer(&mut self, stream: Stream, at: SystemTime, bytes: &[u8]) {
        let len = bytes.len();
        if self.in_flight.fetch_add(len, Ordering::AcqRel) + len > MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(len, Ordering::AcqRel);
            self.drop_chunk(len);
            return;
        }
        let chunk = Chunk { stream, at, bytes: bytes.to_vec(), after_gap: self.gap };
        match self.tx.try_send(chunk) {
            Ok(()) => self.gap = false,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(len, Ordering::AcqRel);
                self.drop_chunk(len);
            }
        }
    }

    fn drop_chunk(&mut self, len: usize) {
        self.gap = true;
        self.dropped.chunks.fetch_add(1, Ordering::Relaxed);
        self.dropped.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

impl TapReceiver {
    /// The next chunk, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Result<Chunk, mpsc::RecvTimeoutError> {
        let chunk = self.rx.recv_timeout(timeout)?;
        self.in_flight.fetch_sub(chunk.bytes.len(), Ordering::AcqRel);
        Ok(chunk)
    }

    /// What was dropped so far: chunks and bytes.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped.chunks.load(Ordering::Relaxed), self.dropped.bytes.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_tap_drops_and_counts_and_marks_the_gap() {
        let (mut tap, rx) = tap();
        let big = vec![b'x'; MAX_IN_FLIGHT / 2 + 1];
        tap.offer(Stream::Stdout, SystemTime::now(), &big);
        tap.offer(Stream::Stdout, SystemTime::now(), &big);
        assert_eq!(rx.dropped(), (1, big.len() as u64));
        let first = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        assert!(!first.after_gap);
        tap.offer(Stream::Stdout, SystemTime::now(), b"next\n");
        let next = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        assert!(next.after_gap);
        assert_eq!(next.bytes, b"next\n");
    }
}
