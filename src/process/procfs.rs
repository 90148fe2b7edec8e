//! Reading the facts the tracer needs from `/proc`.
//!
//! `/proc` is the source of truth during a capture: ptrace events arrive out
//! of order (a new thread can report its first stop before its parent's clone
//! event), so the set of threads is always re-read from `/proc/PID/task`, never
//! reconstructed from events.
//!
//! Every read can race with the task exiting. Errors keep the path that failed
//! and [`ProcError::is_gone`] tells "the task went away" (`ENOENT`/`ESRCH`)
//! apart from real failures. Parsers are separate pure functions so they can
//! be tested on fixture strings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors from reading or parsing `/proc` files.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse {path}: {what}")]
    Parse { path: PathBuf, what: &'static str },
}

impl ProcError {
    /// True if the task (or process) no longer exists.
    pub fn is_gone(&self) -> bool {
        match self {
            ProcError::Read { source, .. } => {
                source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH)
            }
            ProcError::Parse { .. } => false,
        }
    }
}

fn read_string(path: PathBuf) -> Result<(String, PathBuf), ProcError> {
    match fs::read(&path) {
        // /proc text is ASCII except for names (comm, paths), which may be
        // any bytes; lossy conversion keeps the parse going.
        Ok(bytes) => Ok((String::from_utf8_lossy(&bytes).into_owned(), path)),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// The signal disposition bitmasks of a thread group (bit `n-1` = signal `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalMasks {
    /// `SigCgt`: signals with a handler installed.
    pub caught: u64,
    /// `SigIgn`: signals set to `SIG_IGN`.
    pub ignored: u64,
    /// `SigBlk`: signals blocked by this thread.
    pub blocked: u64,
}

impl SignalMasks {
    /// True if `signal` has neither a handler nor `SIG_IGN`, i.e. its default
    /// action applies.
    pub fn is_default(&self, signal: i32) -> bool {
        let Some(bit) = signal_bit(signal) else {
            return false;
        };
        (self.caught | self.ignored) & bit == 0
    }
}

fn signal_bit(signal: i32) -> Option<u64> {
    (1..=64).contains(&signal).then(|| 1u64 << (signal - 1))
}

/// The parts of `/proc/TID/status` the tracer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    /// `Tgid`: the process the thread belongs to.
    pub tgid: i32,
    /// Signal dispositions (shared by the thread group) and this thread's mask.
    pub masks: SignalMasks,
}

/// Parses the text of `/proc/TID/status`.
pub fn parse_status(text: &str) -> Result<TaskStatus, &'static str> {
    let mut tgid = None;
    let (mut caught, mut ignored, mut blocked) = (None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let hex = || u64::from_str_radix(value, 16).ok();
        match key {
            "Tgid" => tgid = value.parse::<i32>().ok(),
            "SigCgt" => caught = hex(),
            "SigIgn" => ignored = hex(),
            "SigBlk" => blocked = hex(),
            _ => {}
        }
    }
    Ok(TaskStatus {
        tgid: tgid.ok_or("no valid Tgid line")?,
        masks: SignalMasks {
            caught: caught.ok_or("no valid SigCgt line")?,
            ignored: ignored.ok_or("no valid SigIgn line")?,
            blocked: blocked.unwrap_or(0),
        },
    })
}

/// Reads `/proc/TID/status` (works for any thread id, listed or not).
pub fn task_status(tid: i32) -> Result<TaskStatus, ProcError> {
    let (text, path) = read_string(PathBuf::from(format!("/proc/{tid}/status")))?;
    parse_status(&text).map_err(|what| ProcError::Parse { path, what })
}

/// The `TracerPid` of a `/proc/PID/status` text: 0 when nobody traces it.
pub fn parse_tracer_pid(text: &str) -> Option<i32> {
    text.lines().find_map(|line| line.strip_prefix("TracerPid:")).and_then(|v| v.trim().parse().ok())
}

/// The process (thread group) that traces task `tid`; 0 when none does.
pub fn tracer_pid(tid: i32) -> Result<i32, ProcError> {
    let (text, path) = read_string(PathBuf::from(format!("/proc/{tid}/status")))?;
    parse_tracer_pid(&text).ok_or(ProcError::Parse { path, what: "no valid TracerPid line" })
}

/// Lists the thread ids in `/proc/TGID/task`, sorted.
pub fn task_ids(tgid: i32) -> Result<Vec<i32>, ProcError> {
    let path = PathBuf::from(format!("/proc/{tgid}/task"));
    let entries = fs::read_dir(&path).map_err(|source| ProcError::Read { path: path.clone(), source })?;
    let mut tids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcError::Read { path: path.clone(), source })?;
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// The scheduler state letter of a task (`R`, `S`, `D`, `T`, `t`, `Z`, `X`…).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskState(pub char);

impl TaskState {
    /// Dead or a zombie: it will never run again and cannot be ptrace-stopped.
    pub fn is_dead(self) -> bool {
        matches!(self.0, 'Z' | 'X' | 'x')
    }

    /// In a ptrace-stop (`t`, "tracing stop").
    pub fn is_traced_stop(self) -> bool {
        self.0 == 't'
    }
}

/// Extracts the state letter from the text of `/proc/PID/stat`.
///
/// The second field is `(comm)`, and comm may contain spaces and `)`
/// (`prctl(PR_SET_NAME, "a) R (b")` is legal), so the state is found after
/// the *last* `)` of the line, never by splitting on spaces.
pub fn parse_stat_state(text: &str) -> Option<TaskState> {
    let after = &text[text.rfind(')')? + 1..];
    after.split_ascii_whitespace().next()?.chars().next().map(TaskState)
}

/// A process as `/proc/PID/stat` shows its place: its parent and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kin {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses the parent and process group (fields 4 and 5) out of the text
/// of `/proc/PID/stat`, counted from the last `)` as for the state.
pub fn parse_stat_kin(pid: i32, text: &str) -> Option<Kin> {
    let mut fields = text[text.rfind(')')? + 1..].split_ascii_whitespace().skip(1);
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Kin { pid, ppid, pgrp })
}

/// Every process of process group `pgrp` now (zombies included), by a scan
/// of `/proc`: processes that end during the scan are left out.
pub fn process_group(pgrp: i32) -> Vec<Kin> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut members: Vec<Kin> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat_kin(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .filter(|kin| kin.pgrp == pgrp)
        .collect();
    members.sort_unstable_by_key(|kin| kin.pid);
    members
}

/// Reads the state of thread `tid` of process `tgid`.
pub fn task_state(tgid: i32, tid: i32) -> Result<TaskState, ProcError> {
    let (text, path) = read_string(PathBuf::from(format!("/proc/{tgid}/task/{tid}/stat")))?;
    parse_stat_state(&text).ok_or(ProcError::Parse { path, what: "no state after the command name" })
}

/// The name of thread `tid` (`/proc/TGID/task/TID/comm`, at most 15 bytes).
pub fn thread_name(tgid: i32, tid: i32) -> Result<String, ProcError> {
    let (text, _) = read_string(PathBuf::from(format!("/proc/{tgid}/task/{tid}/comm")))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The executable of the process `tid` belongs to (`/proc/TID/exe`).
///
/// A live thread id is used rather than the tgid because the exe link of a
/// zombie leader (main thread called `pthread_exit`) can no longer be read.
/// The kernel appends ` (deleted)` if the file was unlinked; it is kept.
pub fn exe(tid: i32) -> Result<PathBuf, ProcError> {
    let path = PathBuf::from(format!("/proc/{tid}/exe"));
    fs::read_link(&path).map_err(|source| ProcError::Read { path, source })
}

/// The command name of process `pid` (`/proc/PID/comm`, at most 15
/// bytes); `None` when it is gone.
pub fn comm(pid: i32) -> Option<String> {
    let (text, _) = read_string(PathBuf::from(format!("/proc/{pid}/comm"))).ok()?;
    Some(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The program process `pid` runs, read after it exec'd: `/proc/PID/exe`,
/// the file the kernel loaded (the ELF a script or a shim such as pyenv's
/// `python3` ended up running), not the path that was started. `None` when
/// it cannot be read (the process is gone).
pub fn executable(pid: i32) -> Option<PathBuf> {
    exe(pid).ok()
}

/// One line of `/proc/PID/maps` whose file was deleted (or replaced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedMapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    /// `major:minor` of the device, as printed.
    pub dev: String,
    pub inode: u64,
    /// The path the file had, without the ` (deleted)` suffix.
    pub path: PathBuf,
}

impl DeletedMapping {
    /// Whether the mapping is executable (code that may need symbols).
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// The entry name in `/proc/PID/map_files/`: `start-end` in lowercase hex
    /// *without* the zero padding that `maps` uses.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// The suffix the kernel appends to the path of an unlinked file.
const DELETED_SUFFIX: &str = " (deleted)";

/// Parses `/proc/PID/maps` and returns the file-backed mappings whose file
/// was deleted. Kernel-internal and anonymous shared objects that also carry
/// the suffix (`/memfd:…`, `/dev/zero`, SysV shm `/SYSV…`) are excluded: they
/// are not files a symbolicator could want.
pub fn parse_deleted_mappings(text: &str) -> Vec<DeletedMapping> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<DeletedMapping> {
    // Five whitespace-separated fields, then padding, then a path that may
    // itself contain spaces.
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.trim_start_matches(' ').strip_suffix(DELETED_SUFFIX)?;
    if !path.starts_with('/') || path.starts_with("/memfd:") || path.starts_with("/dev/") || path.starts_with("/SYSV") {
        return None;
    }
    let [range, perms, offset, dev, inode] = fields;
    let (start, end) = range.split_once('-')?;
    let inode: u64 = inode.parse().ok()?;
    if inode == 0 {
        return None;
    }
    Some(DeletedMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms: perms.to_owned(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: dev.to_owned(),
        inode,
        path: PathBuf::from(path),
    })
}

/// Reads the deleted file-backed mappings of the process `tid` belongs to.
pub fn deleted_mappings(tid: i32) -> Result<Vec<DeletedMapping>, ProcError> {
    let (text, _) = read_string(PathBuf::from(format!("/proc/{tid}/maps")))?;
    Ok(parse_deleted_mappings(&text))
}

/// Path of a mapping's entry in `/proc/TID/map_files`.
pub fn map_file_path(tid: i32, mapping: &DeletedMapping) -> PathBuf {
    Path::new(&format!("/proc/{tid}/map_files")).join(mapping.map_files_name())
}

/// Parses `/proc/PID/auxv`: native-endian `(key, value)` word pairs up to
/// `AT_NULL`.
pub fn parse_auxv(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut pairs = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
        let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
        if key == libc::AT_NULL {
            break;
        }
        pairs.push((key, value));
    }
    pairs
}

/// Reads the auxiliary vector of the process `tid` belongs to.
///
/// Read through a live thread id: a zombie leader's `/proc/TGID/auxv` is
/// empty because its mm is already gone.
pub fn auxv(tid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    let path = PathBuf::from(format!("/proc/{tid}/auxv"));
    let bytes = fs::read(&path).map_err(|source| ProcError::Read { path, source })?;
    Ok(parse_auxv(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcrasher\nUmask:\t0022\nState:\tt (tracing stop)\n\
        Tgid:\t4100\nNgid:\t0\nPid:\t4102\nPPid:\t4000\nTracerPid:\t4000\n\
        SigQ:\t0/63498\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
        SigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\n\
        SigCgt:\t0000000180000200\nCapEff:\t000001ffffffffff\n";

    #[test]
    fn status_masks_and_tgid() {
        let status = parse_status(STATUS).unwrap();
        assert_eq!(status.tgid, 4100);
        // SigCgt 0x180000200: SIGUSR1 (bit 9) and glibc's RT signals 32, 33.
        assert!(!status.masks.is_default(libc::SIGUSR1));
        assert!(!status.masks.is_default(32));
        // SigIgn 0x1000: SIGPIPE (13).
        assert!(!status.masks.is_default(libc::SIGPIPE));
        assert!(status.masks.is_default(libc::SIGSEGV));
        assert!(status.masks.is_default(libc::SIGABRT));
        assert!(!status.masks.is_default(0));
        assert!(!status.masks.is_default(65));
    }

    #[test]
    fn tracer_pid_of_a_status() {
        assert_eq!(parse_tracer_pid(STATUS), Some(4000));
        assert_eq!(parse_tracer_pid("Name:\tx\nTracerPid:\t0\n"), Some(0));
        assert_eq!(parse_tracer_pid("Name:\tx\n"), None);
    }

    #[test]
    fn status_without_masks_is_an_error() {
        assert_eq!(parse_status("Name:\tx\nTgid:\t1\n"), Err("no valid SigCgt line"));
        assert_eq!(parse_status("SigCgt:\t0\nSigIgn:\t0\n"), Err("no valid Tgid line"));
    }

    #[test]
    fn stat_state_with_hostile_comm() {
        let plain = "4102 (crasher) t 4000 4100 4100 0 -1 4194560 100";
        assert_eq!(parse_stat_state(plain), Some(TaskState('t')));
        // comm = "a) R (b": splitting on spaces would read 'R'.
        let hostile = "4103 (a) R (b) T 4000 4100 4100 0 -1";
        assert_eq!(parse_stat_state(hostile), Some(TaskState('T')));
        let spaces = "7 (my worker 1) Z 1 7 7";
        let state = parse_stat_state(spaces).unwrap();
        assert!(state.is_dead());
        assert_eq!(parse_stat_state("garbage"), None);
        assert_eq!(parse_stat_state("1 (x)"), None);
    }

    #[test]
    fn parent_and_group_with_hostile_comm() {
        let hostile = "4103 (a) 1 2 (b) S 4000 4100 4100 0 -1";
        assert_eq!(parse_stat_kin(4103, hostile), Some(Kin { pid: 4103, ppid: 4000, pgrp: 4100 }));
        assert_eq!(parse_stat_kin(1, "1 (x) S 0"), None);
        // This test process is in its own group, with cargo's test harness.
        let me = std::process::id() as i32;
        let group = process_group(nix::unistd::getpgrp().as_raw());
        assert!(group.iter().any(|kin| kin.pid == me), "{group:?}");
    }

    const MAPS: &str = "\
00400000-00401000 r--p 00000000 08:01 1234       /opt/app/server (deleted)
00401000-00402000 r-xp 00001000 08:01 1234       /opt/app/server (deleted)
7f0000000000-7f0000001000 r-xp 00000000 08:01 99 /usr/lib/lib with space.so (deleted)
7f0000001000-7f0000002000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6
7f0000002000-7f0000003000 rw-s 00000000 00:01 55 /memfd:jit (deleted)
7f0000003000-7f0000004000 rw-s 00000000 00:05 56 /dev/zero (deleted)
7f0000004000-7f0000005000 rw-s 00000000 00:01 57 /SYSV00000000 (deleted)
7f0000005000-7f0000006000 rw-p 00000000 00:00 0 
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn deleted_mappings_only_real_files() {
        let maps = parse_deleted_mappings(MAPS);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].path, PathBuf::from("/opt/app/server"));
        assert_eq!(maps[0].start, 0x400000);
        assert!(!maps[0].is_executable());
        assert!(maps[1].is_executable());
        assert_eq!(maps[1].offset, 0x1000);
        assert_eq!(maps[1].inode, 1234);
        // map_files entries have no zero padding.
        assert_eq!(maps[1].map_files_name(), "401000-402000");
        assert_eq!(maps[2].path, PathBuf::from("/usr/lib/lib with space.so"));
        assert_eq!(maps[2].dev, "08:01");
    }

    #[test]
    fn auxv_pairs_stop_at_null() {
        let mut bytes = Vec::new();
        for (k, v) in [(libc::AT_PHDR, 0x40u64), (libc::AT_ENTRY, 0x1000), (0, 0), (9, 9)] {
            bytes.extend_from_slice(&k.to_ne_bytes());
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&bytes), vec![(libc::AT_PHDR, 0x40), (libc::AT_ENTRY, 0x1000)]);
    }
}
