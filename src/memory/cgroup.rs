//! The child's memory cgroup: where it is, what it counts, and a fresh one
//! with a limit for `--memory-limit`.
//!
//! Both versions exist on real hosts and are handled:
//!
//! | fact        | cgroup v1 (memory controller) | cgroup v2                      |
//! |-------------|-------------------------------|--------------------------------|
//! | membership  | `N:memory:/path` line         | `0::/path` line                |
//! | OOM kills   | `oom_kill` in memory.oom_control | `oom_kill` in memory.events |
//! | usage       | memory.usage_in_bytes         | memory.current                 |
//! | peak        | memory.max_usage_in_bytes     | memory.peak (kernel ≥ 5.19)    |
//! | limit       | memory.limit_in_bytes (huge = none) | memory.max (`max` = none) |
//!
//! A path in `/proc/PID/cgroup` is relative to the root of the hierarchy as
//! the process's cgroup namespace sees it; the mount in `/proc/self/
//! mountinfo` may show only a subtree of it (its root field), as in a
//! container. The directory is the mount point joined with the path less
//! that root.
//!
//! On v1 the kernel counts an OOM kill in the victim's own cgroup only; on
//! v2 `memory.events` also counts kills in descendant cgroups. Either way a
//! counter that moved while the child ran means the OOM killer acted in its
//! cgroup; which process it killed is for the kernel log to say.
//!
//! `--memory-limit` on v2 needs crashwatch's cgroup to give the memory
//! controller to its children, which a non-root cgroup with processes in it
//! may not: crashwatch moves itself into a leaf (`crashwatch-supervisor`)
//! first. What it changed is undone when the child's cgroup is removed, so
//! that a hand-made cgroup can take processes again and be removed. Verified
//! on a real v2 kernel by `tests/cgroup_v2_vm.rs`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Anything at or above this in v1's memory.limit_in_bytes means "no limit"
/// (the kernel reports PAGE_COUNTER_MAX rounded to pages, about 2^63).
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("process {pid} is in no memory cgroup that is mounted here")]
    NotFound { pid: i32 },
    #[error("failed to create the cgroup {path}{advice}")]
    Create {
        path: PathBuf,
        advice: Advice,
        #[source]
        source: io::Error,
    },
    #[error("failed to set the memory limit of {path} to {limit} bytes")]
    Limit {
        path: PathBuf,
        limit: u64,
        #[source]
        source: io::Error,
    },
    #[error("failed to enable the memory controller for the cgroups below {dir} (writing {value} to {file}){advice}")]
    Delegate {
        dir: PathBuf,
        value: String,
        file: PathBuf,
        // Boxed: the variant would make every `Result` of this module large.
        advice: Box<Advice>,
        #[source]
        source: io::Error,
    },
    #[error("failed to move process {pid} into {path}{advice}")]
    Join {
        pid: i32,
        path: PathBuf,
        advice: Advice,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove the cgroup {path}; processes of the child may still be in it")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to give {dir} back the state crashwatch found it in ({step})")]
    Restore {
        dir: PathBuf,
        step: String,
        #[source]
        source: io::Error,
    },
}

/// What to do about a cgroup that crashwatch could not change, read from
/// the error the kernel gave; shown after the failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    /// Nothing more useful to say than the error itself.
    None,
    /// EACCES/EPERM: the cgroup belongs to someone else.
    NotDelegated { dir: PathBuf, uid: u32 },
    /// EBUSY on v2: other processes are in the cgroup, so its children get
    /// no controller ("no internal processes").
    Shared { dir: PathBuf, pids: Vec<i32> },
    /// ENOENT on v2: the parent does not give the memory controller.
    NoController { dir: PathBuf },
    /// EROFS: a container's read-only cgroup mount.
    ReadOnly,
}

impl Advice {
    fn for_error(error: &io::Error, dir: &Path) -> Advice {
        match error.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => {
                Advice::NotDelegated { dir: dir.to_path_buf(), uid: nix::unistd::geteuid().as_raw() }
            }
            Some(libc::EBUSY) => Advice::Shared { dir: dir.to_path_buf(), pids: other_processes(dir) },
            Some(libc::ENOENT) => Advice::NoController { dir: dir.to_path_buf() },
            Some(libc::EROFS) => Advice::ReadOnly,
            _ => Advice::None,
        }
    }
}

/// Tells a user how to get a memory limit anyway: the limit can always go
/// on the cgroup crashwatch runs in, whose OOM kills it recognises.
const LIMIT_ELSEWHERE: &str = "drop --memory-limit and run crashwatch in a cgroup that has the limit (systemd: \
                               MemoryMax=; docker: --memory), whose OOM kills crashwatch recognises as well";

impl std::fmt::Display for Advice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Advice::None => Ok(()),
            Advice::NotDelegated { dir, uid } => write!(
                f,
                "; {} is not delegated to uid {uid}, which crashwatch runs as: run crashwatch as root, or in a \
                 cgroup delegated to its user (systemd: Delegate=yes; by hand: chown the cgroup and its \
                 cgroup.procs, cgroup.subtree_control and cgroup.threads to the user), or {LIMIT_ELSEWHERE}",
                dir.display()
            ),
            Advice::Shared { dir, pids } => {
                let list: Vec<String> = pids.iter().map(i32::to_string).collect();
                match &list[..] {
                    [] => write!(f, "; ")?,
                    [one] => write!(f, "; process {one} shares {} with crashwatch, and ", dir.display())?,
                    _ => write!(f, "; processes {} share {} with crashwatch, and ", list.join(", "), dir.display())?,
                }
                write!(
                    f,
                    "cgroup v2 gives no controller to the children of a cgroup that has processes of its \
                     own: run crashwatch as the only process of its cgroup (systemd: a service with \
                     Delegate=yes), or {LIMIT_ELSEWHERE}"
                )
            }
            Advice::NoController { dir } => {
                let parent = dir.parent().unwrap_or(dir).join("cgroup.subtree_control");
                write!(
                    f,
                    "; the parent of {} does not give it the memory controller: write +memory to {} (systemd: \
                     MemoryAccounting=yes or Delegate=yes), or {LIMIT_ELSEWHERE}",
                    dir.display(),
                    parent.display()
                )
            }
            Advice::ReadOnly => {
                write!(f, "; the cgroup filesystem is mounted read-only here, as in a container: {LIMIT_ELSEWHERE}")
            }
        }
    }
}

/// The processes in cgroup `dir` other than crashwatch.
fn other_processes(dir: &Path) -> Vec<i32> {
    let own = std::process::id() as i32;
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    procs.lines().filter_map(|l| l.trim().parse().ok()).filter(|&pid| pid != own).collect()
}

/// One memory cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    pub version: Version,
    pub dir: PathBuf,
}

impl MemoryCgroup {
    /// The memory cgroup of process `pid` (`"self"` works through `pid` 0).
    pub fn of_process(pid: i32) -> Result<MemoryCgroup, CgroupError> {
        let proc = if pid == 0 { "/proc/self/cgroup".to_string() } else { format!("/proc/{pid}/cgroup") };
        let membership = read(Path::new(&proc))?;
        let mounts = read(Path::new("/proc/self/mountinfo"))?;
        locate(&membership, &mounts).ok_or(CgroupError::NotFound { pid })
    }

    fn file(&self, v1: &str, v2: &str) -> PathBuf {
        self.dir.join(match self.version {
            Version::V1 => v1,
            Version::V2 => v2,
        })
    }

    /// How many processes the OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.file("memory.oom_control", "memory.events")).ok()?;
        keyed_value(&text, "oom_kill")
    }

    /// The cgroup's path from the root of its hierarchy as crashwatch's
    /// cgroup namespace sees it (the form of `/proc/PID/cgroup`), found
    /// from its directory and the mount it is under.
    pub fn hierarchy_path(&self) -> Option<String> {
        let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
        path_in_hierarchy(&self.dir, self.version, &mounts)
    }

    /// Memory charged to the cgroup now, in bytes.
    pub fn usage(&self) -> Option<u64> {
        read_u64(&self.file("memory.usage_in_bytes", "memory.current"))
    }

    /// The memory the cgroup cannot give back without an OOM kill, in bytes:
    /// its usage less the inactive page cache (`total_inactive_file` of v1's
    /// memory.stat, `inactive_file` of v2's), which the kernel reclaims
    /// before it kills. This is the "working set" container runtimes and
    /// the kubelet watch; a program that only reads many files has a large
    /// usage but a small working set.
    pub fn working_set(&self) -> Option<u64> {
        let usage = self.usage()?;
        let stat = fs::read_to_string(self.dir.join("memory.stat")).ok()?;
        let inactive_file = keyed_value(&stat, self.stat_key("total_inactive_file", "inactive_file"))?;
        Some(usage.saturating_sub(inactive_file))
    }

    fn stat_key(&self, v1: &'static str, v2: &'static str) -> &'static str {
        match self.version {
            Version::V1 => v1,
            Version::V2 => v2,
        }
    }

    /// The most memory ever charged to the cgroup, in bytes.
    pub fn peak(&self) -> Option<u64> {
        read_u64(&self.file("memory.max_usage_in_bytes", "memory.peak"))
    }

    /// The cgroup's memory limit in bytes; `None` when it has none.
    pub fn limit(&self) -> Option<u64> {
        let text = fs::read_to_string(self.file("memory.limit_in_bytes", "memory.max")).ok()?;
        let limit = text.trim().parse::<u64>().ok()?;
        (limit < V1_UNLIMITED).then_some(limit)
    }

    /// Creates the cgroup `name` below this one with a memory limit. On v2
    /// this cgroup must first give the memory controller to its children,
    /// which [`ChildCgroup::remove`] undoes.
    pub fn create_child(&self, name: &str, limit: u64) -> Result<ChildCgroup, CgroupError> {
        let delegation = match self.version {
            Version::V1 => None,
            Version::V2 => self.delegate_memory()?,
        };
        let mut made = ChildCgroup {
            cgroup: MemoryCgroup { version: self.version, dir: self.dir.join(name) },
            parent: self.dir.clone(),
            delegation,
            created: false,
        };
        // Dropping `made` on an error below undoes the delegation.
        fs::create_dir(&made.cgroup.dir).map_err(|source| CgroupError::Create {
            path: made.cgroup.dir.clone(),
            advice: Advice::for_error(&source, &self.dir),
            source,
        })?;
        made.created = true;
        let limit_file = made.cgroup.file("memory.limit_in_bytes", "memory.max");
        fs::write(&limit_file, limit.to_string()).map_err(|source| CgroupError::Limit {
            path: limit_file,
            limit,
            source,
        })?;
        Ok(made)
    }

    /// On v2, enables the memory controller for this cgroup's children. A
    /// cgroup with processes of its own may not (the "no internal
    /// processes" rule, EBUSY; the root cgroup is exempt), so crashwatch
    /// then first moves itself into a leaf of its own. What it changed is
    /// returned, to be undone.
    fn delegate_memory(&self) -> Result<Option<Delegation>, CgroupError> {
        let control = self.dir.join("cgroup.subtree_control");
        if fs::read_to_string(&control).is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
            return Ok(None);
        }
        let failed = |file: &Path, value: &str, source: io::Error| CgroupError::Delegate {
            dir: self.dir.clone(),
            value: value.to_string(),
            file: file.to_path_buf(),
            advice: Box::new(Advice::for_error(&source, &self.dir)),
            source,
        };
        let enable = || fs::write(&control, "+memory");
        match enable() {
            Ok(()) => return Ok(Some(Delegation { leaf: None })),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(failed(&control, "+memory", e)),
        }
        let leaf = self.dir.join(SUPERVISOR_LEAF);
        let own_pid = std::process::id().to_string();
        // An existing leaf is another crashwatch's, running beside this one.
        let created = match fs::create_dir(&leaf) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(failed(&self.dir.join(SUPERVISOR_LEAF), "a new cgroup", e)),
        };
        let delegation = Delegation { leaf: Some(leaf.clone()) };
        let procs = leaf.join("cgroup.procs");
        if let Err(e) = fs::write(&procs, &own_pid) {
            if created {
                let _ = fs::remove_dir(&leaf);
            }
            return Err(failed(&procs, &format!("crashwatch's pid {own_pid}"), e));
        }
        if let Err(e) = enable() {
            let error = failed(&control, "+memory", e);
            if let Err(undo) = delegation.undo(&self.dir, false) {
                tracing::warn!("{}", crate::errors::Chain(&undo));
            }
            return Err(error);
        }
        Ok(Some(delegation))
    }
    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|source| CgroupError::Join {
            pid,
            path: self.dir.clone(),
            advice: Advice::for_error(&source, &self.dir),
            source,
        })
    }
}

/// The leaf crashwatch moves itself into on v2 when its cgroup has other
/// processes, so that the cgroup may give controllers to its children.
pub const SUPERVISOR_LEAF: &str = "crashwatch-supervisor";

/// A cgroup [`MemoryCgroup::create_child`] made for one child, with what it
/// changed in the parent to make it. Dropped, it is removed and the parent
/// given back as it was (errors logged); [`ChildCgroup::remove`] does the
/// same and returns the errors.
#[derive(Debug)]
pub struct ChildCgroup {
    pub cgroup: MemoryCgroup,
    parent: PathBuf,
    delegation: Option<Delegation>,
    created: bool,
}

impl ChildCgroup {
    /// Removes the cgroup (which fails while processes are still in it),
    /// then undoes the delegation if nothing else uses it.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.tear_down()
    }

    fn tear_down(&mut self) -> Result<(), CgroupError> {
        if std::mem::take(&mut self.created) {
            fs::remove_dir(&self.cgroup.dir)
                .map_err(|source| CgroupError::Remove { path: self.cgroup.dir.clone(), source })?;
        }
        match self.delegation.take() {
            Some(delegation) => delegation.undo(&self.parent, true),
            None => Ok(()),
        }
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.tear_down() {
            tracing::warn!("{}", crate::errors::Chain(&e));
        }
    }
}

/// What [`MemoryCgroup::delegate_memory`] changed: the memory controller
/// enabled in the parent's `cgroup.subtree_control`, and crashwatch moved
/// into `leaf` first if it had to.
#[derive(Debug)]
struct Delegation {
    leaf: Option<PathBuf>,
}

impl Delegation {
    /// Gives `dir` back as it was: left with the memory controller enabled
    /// for its children, a cgroup can take no process again (a shell that
    /// writes itself into it to run crashwatch once more gets EBUSY), and
    /// an empty leaf would keep it from being removed. `enabled` is false
    /// when enabling failed. The controller stays while other cgroups below
    /// `dir` (another crashwatch's, someone's) may need it.
    fn undo(self, dir: &Path, enabled: bool) -> Result<(), CgroupError> {
        let leaf_name = self.leaf.as_deref().and_then(Path::file_name);
        let shared_leaf = self.leaf.as_ref().is_some_and(|leaf| !other_processes(leaf).is_empty());
        if enabled {
            let others = child_cgroups(dir).into_iter().filter(|name| Some(name.as_os_str()) != leaf_name);
            let others: Vec<String> = others.map(|name| name.to_string_lossy().into_owned()).collect();
            if !others.is_empty() || shared_leaf {
                tracing::debug!(
                    "the memory controller stays enabled for the cgroups below {}: still in use ({})",
                    dir.display(),
                    if shared_leaf { format!("other processes in {SUPERVISOR_LEAF}") } else { others.join(", ") }
                );
                return Ok(());
            }
        }
        let failed = |step: String, source: io::Error| CgroupError::Restore { dir: dir.to_path_buf(), step, source };
        if enabled {
            let control = dir.join("cgroup.subtree_control");
            fs::write(&control, "-memory")
                .map_err(|e| failed(format!("writing -memory to {}", control.display()), e))?;
        }
        if let Some(leaf) = &self.leaf {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, std::process::id().to_string())
                .map_err(|e| failed(format!("moving crashwatch back into {}", procs.display()), e))?;
            if !shared_leaf {
                fs::remove_dir(leaf).map_err(|e| failed(format!("removing {}", leaf.display()), e))?;
            }
        }
        Ok(())
    }
}

/// The names of the cgroups directly below `dir`.
fn child_cgroups(dir: &Path) -> Vec<std::ffi::OsString> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.file_name()).collect()
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` per line).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key)).then(|| words.next()?.parse().ok()).flatten()
    })
}

/// Finds the memory cgroup directory from a `/proc/PID/cgroup` text and a
/// `/proc/self/mountinfo` text. v1's memory controller wins when both are
/// there (a hybrid host), since that is where the limits are enforced.
fn locate(membership: &str, mountinfo: &str) -> Option<MemoryCgroup> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let mut v2 = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let mount = mounts.iter().find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == "memory"))?;
            return Some(MemoryCgroup { version: Version::V1, dir: mount.dir_for(path) });
        }
        if controllers.is_empty() {
            v2 = mounts.iter().find(|m| m.fstype == "cgroup2").map(|m| m.dir_for(path));
        }
    }
    v2.map(|dir| MemoryCgroup { version: Version::V2, dir })
}

/// The path in the hierarchy of cgroup directory `dir`: the root of the
/// deepest mount of the version's hierarchy that holds it, joined with the
/// rest of `dir`.
fn path_in_hierarchy(dir: &Path, version: Version, mountinfo: &str) -> Option<String> {
    let (root, rest) = mountinfo
        .lines()
        .filter_map(Mount::parse)
        .filter(|m| match version {
            Version::V1 => m.fstype == "cgroup" && m.options.split(',').any(|o| o == "memory"),
            Version::V2 => m.fstype == "cgroup2",
        })
        .filter_map(|m| {
            let mount_point = unescape_octal(m.mount_point);
            let rest = dir.strip_prefix(&mount_point).ok()?.to_str()?.to_string();
            Some((mount_point.len(), unescape_octal(m.root), rest))
        })
        .max_by_key(|(depth, ..)| *depth)
        .map(|(_, root, rest)| (root, rest))?;
    let root = root.trim_end_matches('/');
    Some(if rest.is_empty() { format!("{root}/") } else { format!("{root}/{rest}") })
}

/// The fields of a mountinfo line that matter here.
struct Mount<'a> {
    root: &'a str,
    mount_point: &'a str,
    fstype: &'a str,
    options: &'a str,
}

impl<'a> Mount<'a> {
    /// `36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        Some(Mount { root: left.get(3)?, mount_point: left.get(4)?, fstype, options: right.next()? })
    }

    fn dir_for(&self, path: &str) -> PathBuf {
        let relative = path.strip_prefix(self.root).unwrap_or(path).trim_start_matches('/');
        let mount_point = unescape_octal(self.mount_point);
        if relative.is_empty() { PathBuf::from(mount_point) } else { Path::new(&mount_point).join(relative) }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let code = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
