//! The child's output: one pump thread per pipe reads whatever is there at
//! once, writes it through to crashwatch's own stdout or stderr, and records
//! it in the shared [`Ring`].
//!
//! Each pipe has its own thread so that neither can block the other: a child
//! that fills its stderr pipe while crashwatch waits on stdout would hang
//! (ripgrep drains a child's stderr on its own thread for the same reason).
//! When crashwatch's own stdout or stderr goes away, the pumps keep draining
//! the child, and keep recording, so the child never blocks on a full pipe.

pub mod console;
pub mod ring;
pub mod tap;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub use console::Console;
pub use ring::{Line, Ring, RingLimits, Stream};
pub use tap::{Tap, TapReceiver};

/// Bytes read per `read(2)`: the size of a grown pipe buffer.
pub const READ_SIZE: usize = 1 << 20;

/// The running pumps.
pub struct Pumps {
    ring: Arc<Mutex<Ring>>,
    eof: mpsc::Receiver<Stream>,
    open: usize,
}

impl Pumps {
    /// Starts one pump per given fd (the read ends of the child's pipes, or
    /// a pseudo-terminal's master for stdout). With a `tap`, every read is
    /// also offered to it (see [`tap`]): never waited for.
    pub fn start(stdout: OwnedFd, stderr: OwnedFd, ring: Arc<Mutex<Ring>>, tap: Option<Tap>) -> std::io::Result<Pumps> {
        let (tx, eof) = mpsc::channel();
        for (stream, fd) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
            let ring = Arc::clone(&ring);
            let tx = tx.clone();
            let tap = tap.clone();
            thread::Builder::new().name(format!("pump-{}", stream.name())).spawn(move || {
                pump(stream, fd, &ring, tap);
                let _ = tx.send(stream);
            })?;
        }
        Ok(Pumps { ring, eof, open: 2 })
    }

    /// Waits until both pipes reached end of file, or `limit` passed: a
    /// descendant that inherited the pipes can keep them open after the
    /// child died, and the report must not wait for it forever. Returns
    /// whether both were drained to the end.
    pub fn drain(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.eof.recv_timeout(left) {
                Ok(_) => self.open -= 1,
                Err(_) => return false,
            }
        }
        true
    }

    /// The last lines the child printed.
    pub fn snapshot(&self) -> Vec<Line> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).snapshot()
    }
}

fn pump(stream: Stream, fd: OwnedFd, ring: &Mutex<Ring>, mut tap: Option<Tap>) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut passing = true;
    loop {
        let n = match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            // A pseudo-terminal's master reads EIO once every slave is closed.
            Err(nix::errno::Errno::EIO) => break,
            Err(e) => {
                tracing::error!("failed to read the child's {}: {e}; its output is lost from here on", stream.name());
                break;
            }
        };
        let bytes = &buf[..n];
        if passing {
            passing = match stream {
                Stream::Stdout => crate::sys::write_all(std::io::stdout().as_fd(), bytes).is_ok(),
                Stream::Stderr => Console::get().child_stderr(bytes),
            };
            if !passing && stream == Stream::Stdout {
                tracing::warn!("crashwatch's stdout is closed; the child's stdout is now only kept for reports");
            }
        }
        let at = SystemTime::now();
        ring.lock().unwrap_or_else(|e| e.into_inner()).push(stream, at, bytes);
        if let Some(tap) = &mut tap {
            tap.offer(stream, at, bytes);
        }
    }
}
