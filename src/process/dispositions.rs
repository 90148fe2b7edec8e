//! A process's signal dispositions, read at every stop that needs them.
//!
//! The tracer asks at each crash-class stop whether the process has a
//! handler for the signal *now*: handlers change (a runtime's handler that
//! gives up sets `SIG_DFL` and returns, to fault again), so the answer is
//! never kept, only the way to get it: [`DispositionsFile`] holds the group
//! leader's `/proc/TGID/task/TGID/stat` open and reads it with one `pread`
//! into a buffer on the stack, parsed without allocating. That line shows
//! `sigignore` and `sigcatch` (fields 33 and 34), the thread group's shared
//! dispositions of signals 1–31, which hold every crash signal; the kernel
//! prints it faster than `status` (BENCHMARKS.md, issue 20).
//!
//! The open file names the kernel's pid, not the number: once the process
//! is gone reads fail (`ESRCH`), they never reach a process that was given
//! the same number later.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::process::procfs::ProcError;

/// The dispositions of signals 1–31 (bit `n-1` = signal `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispositions {
    /// Signals set to `SIG_IGN`.
    pub ignored: u32,
    /// Signals with a handler installed.
    pub caught: u32,
}

impl Dispositions {
    /// Whether `signal` has a handler or is ignored; `None` for a signal
    /// outside 1–31, which this line does not show.
    pub fn handled_or_ignored(&self, signal: i32) -> Option<bool> {
        let bit = (1..=31).contains(&signal).then(|| 1u32 << (signal - 1))?;
        Some((self.ignored | self.caught) & bit != 0)
    }
}

// Every crash signal is one the stat line shows.
const _: () = {
    let mut i = 0;
    while i < crate::process::signals::CRASH.len() {
        assert!(crate::process::signals::CRASH[i] >= 1 && crate::process::signals::CRASH[i] <= 31);
        i += 1;
    }
};

/// Field 33 (`sigignore`) counted from the state letter, which is field 3.
const SIGIGNORE_AFTER_STATE: usize = 33 - 3;

/// Parses the dispositions out of a `/proc/PID/task/TID/stat` line.
///
/// The command name (field 2) may hold spaces and `)`, so the fields are
/// counted from the *last* `)`.
pub fn parse_stat(line: &[u8]) -> Option<Dispositions> {
    let after = &line[line.iter().rposition(|&b| b == b')')? + 1..];
    let mut fields = after.split(|&b| b == b' ').filter(|f| !f.is_empty()).skip(SIGIGNORE_AFTER_STATE);
    let mut number = || -> Option<u32> {
        let field = fields.next()?;
        let digits = field.strip_suffix(b"\n").unwrap_or(field);
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let ignored = number()?;
    let caught = number()?;
    Some(Dispositions { ignored, caught })
}

/// Room for any stat line: about 50 numbers of at most 20 digits and a
/// command name of at most 64 bytes.
const STAT_MAX: usize = 2048;

/// `/proc/TGID/task/TGID/stat` of one process, kept open.
#[derive(Debug)]
pub struct DispositionsFile {
    tgid: i32,
    file: File,
}

impl DispositionsFile {
    /// Opens the stat file of process `tgid`'s leader (which stays readable
    /// while the leader is a zombie and other threads live on).
    pub fn open(tgid: i32) -> Result<DispositionsFile, ProcError> {
        let path = stat_path(tgid);
        match File::open(&path) {
            Ok(file) => Ok(DispositionsFile { tgid, file }),
            Err(source) => Err(ProcError::Read { path, source }),
        }
    }

    /// The process's dispositions now: one `pread`, no allocation.
    pub fn read(&self) -> Result<Dispositions, ProcError> {
        let mut buf = [0u8; STAT_MAX];
        let n =
            self.file.read_at(&mut buf, 0).map_err(|source| ProcError::Read { path: stat_path(self.tgid), source })?;
        if n == buf.len() {
            let source = io::Error::new(io::ErrorKind::InvalidData, "stat line longer than expected");
            return Err(ProcError::Read { path: stat_path(self.tgid), source });
        }
        parse_stat(&buf[..n]).ok_or(ProcError::Parse { path: stat_path(self.tgid), what: "no sigignore/sigcatch" })
    }
}

fn stat_path(tgid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{tgid}/task/{tgid}/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A python3 process with a SIGSEGV handler, started in the background
    // by bash (SIGINT and SIGQUIT ignored), read on this machine.
    const PYTHON: &[u8] = b"30195 (python3) S 30193 30193 4993 0 -1 4194304 2900 6551 0 0 4 0 3 3 20 0 1 0 \
        111912 16961536 3346 18446744073709551615 94880466698240 94880466698581 140726463731792 0 0 0 0 \
        16781318 1024 1 0 0 17 1 0 0 0 0 0 94880466709936 94880466710552 94880571641856 140726463740078 \
        140726463740201 140726463740201 140726463741903 0\n";

    #[test]
    fn sigignore_and_sigcatch_of_a_real_line() {
        let d = parse_stat(PYTHON).unwrap();
        assert_eq!(d, Dispositions { ignored: 0x100_1006, caught: 0x400 });
        assert_eq!(d.handled_or_ignored(libc::SIGSEGV), Some(true));
        assert_eq!(d.handled_or_ignored(libc::SIGINT), Some(true));
        assert_eq!(d.handled_or_ignored(libc::SIGPIPE), Some(true));
        assert_eq!(d.handled_or_ignored(libc::SIGABRT), Some(false));
        assert_eq!(d.handled_or_ignored(libc::SIGSYS), Some(false));
        assert_eq!(d.handled_or_ignored(0), None);
        assert_eq!(d.handled_or_ignored(32), None);
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        // comm = "a) 1 2 (b": counting fields from the first ')' would be
        // off by three.
        let hostile = b"7 (a) 1 2 (b) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0 0 0 0 0 0 0 0 4096 2048 0";
        assert_eq!(parse_stat(hostile), Some(Dispositions { ignored: 4096, caught: 2048 }));
    }

    #[test]
    fn short_or_garbled_lines_are_not_guessed() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"7 (x) S 1 7"), None);
        assert_eq!(parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0 0 0 0 0 0 0 0 12 x1 0"), None);
        // A value past 32 bits is not a 31-signal mask.
        let wide = b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0 0 0 0 0 0 0 0 4294967296 0 0";
        assert_eq!(parse_stat(wide), None);
    }

    #[test]
    fn this_process_read_through_an_open_file() {
        // The test harness's own dispositions, as status shows them.
        let pid = std::process::id() as i32;
        let file = DispositionsFile::open(pid).unwrap();
        let read = file.read().unwrap();
        let status = crate::process::procfs::task_status(pid).unwrap();
        assert_eq!(u64::from(read.caught), status.masks.caught & 0x7fff_ffff);
        assert_eq!(u64::from(read.ignored), status.masks.ignored & 0x7fff_ffff);
        // The same file answers again, from the start.
        assert_eq!(file.read().unwrap(), read);
    }
}
