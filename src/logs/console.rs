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
//!
//! crashwatch's own lines start with `crashwatch: `. When stderr is the
//! journal (systemd sets `JOURNAL_STREAM` to the device and inode of the
//! stream it connected), each line also starts with its syslog priority,
//! `<3>` for errors to `<7>` for debug, which journald strips and records.

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

/// The syslog priority of one of crashwatch's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Error = 3,
    Warning = 4,
    Info = 6,
    Debug = 7,
}

/// The process-wide console.
pub struct Console {
    stderr: Mutex<State>,
    line_done: Condvar,
    journal: bool,
}

impl Console {
    /// The console of this process.
    pub fn get() -> &'static Console {
        static CONSOLE: OnceLock<Console> = OnceLock::new();
        CONSOLE.get_or_init(|| Console {
            stderr: Mutex::new(State::default()),
            line_done: Condvar::new(),
            journal: stderr_is_journal(),
        })
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

    /// Writes crashwatch's own lines, each as `crashwatch: LINE`, with the
    /// priority prefix when stderr is the journal.
    pub fn say(&self, priority: Priority, text: &str) {
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.lines() {
            if self.journal {
                out.push_str(&format!("<{}>", priority as u8));
            }
            out.push_str("crashwatch: ");
            out.push_str(line);
            out.push('\n');
        }
        self.own_lines(out.as_bytes());
    }

    /// Writes complete lines as they are.
    fn own_lines(&self, text: &[u8]) {
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

/// Whether fd 2 is the stream systemd connected to the journal.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else { return false };
    let Ok(stat) = nix::sys::stat::fstat(io::stderr()) else { return false };
    dev.parse() == Ok(stat.st_dev) && ino.parse() == Ok(stat.st_ino)
}

/// A `tracing` writer that hands each formatted event to [`Console::say`].
pub struct LogWriter {
    priority: Priority,
    buf: Vec<u8>,
}

impl LogWriter {
    pub fn new(priority: Priority) -> LogWriter {
        LogWriter { priority, buf: Vec::new() }
    }
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
            Console::get().say(self.priority, &String::from_utf8_lossy(&self.buf));
        }
    }
}
