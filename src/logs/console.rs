//! crashwatch's own stdout and stderr, shared between the child's output
//! (passed through byte for byte) and crashwatch's log lines.
//!
//! The child's stderr and crashwatch's logs go to the same fd. To keep a log
//! line from landing in the middle of a line the child is writing, both take
//! one lock, and the console remembers whether the child's last write ended
//! its line. A log line waits briefly for the child to finish the line; if
//! it does not (a progress bar, a prompt), a newline is inserted first. That
//! inserted byte is the only change crashwatch ever makes to the stream, and
//! only while it has something to say.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sys;

/// How long a log line waits for the child to finish its line.
const MID_LINE_WAIT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    /// The child wrote to stderr and has not ended the line yet.
    mid_line: bool,
    /// Writing to our stderr failed (closed pipe): stop trying.
    broken: bool,
}

/// The process-wide console.
pub struct Console {
    stderr: Mutex<State>,
    line_done: Condvar,
}

impl Console {
    /// The console of this process.
    pub fn get() -> &'static Console {
        static CONSOLE: OnceLock<Console> = OnceLock::new();
        CONSOLE.get_or_init(|| Console { stderr: Mutex::new(State::default()), line_done: Condvar::new() })
    }

    /// Writes the child's stderr bytes through. Returns false once our own
    /// stderr is gone (the caller keeps draining the child regardless).
    pub fn child_stderr(&self, bytes: &[u8]) -> bool {
        let mut state = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if state.broken {
            return false;
        }
        if sys::write_all(io::stderr().as_fd(), bytes).is_err() {
            state.broken = true;
            return false;
        }
        state.mid_line = bytes.last() != Some(&b'\n');
        if !state.mid_line {
            self.line_done.notify_all();
        }
        true
    }

    /// Writes one or more complete lines of crashwatch's own.
    pub fn own_lines(&self, text: &[u8]) {
        let mut state = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + MID_LINE_WAIT;
        while state.mid_line && !state.broken {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = sys::write_all(io::stderr().as_fd(), b"\n");
                state.mid_line = false;
                break;
            }
            state = self.line_done.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        if !state.broken && sys::write_all(io::stderr().as_fd(), text).is_err() {
            state.broken = true;
        }
    }
}

/// A `tracing` writer that hands each formatted event to [`Console::own_lines`].
#[derive(Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            Console::get().own_lines(&self.buf);
        }
    }
}
