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
    #[error("failed to create the cgroup {path}")]
    Create {
        path: PathBuf,
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
    #[error(
        "failed to enable the memory controller for the children of {path} (on cgroup v2 the cgroup crashwatch \
         runs in must delegate it: systemd's Delegate=yes, or run crashwatch in a cgroup of its own)"
    )]
    Delegate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to move process {pid} into {path}")]
    Join {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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

    /// Creates the cgroup `name` below this one with a memory limit.
    pub fn create_child(&self, name: &str, limit: u64) -> Result<MemoryCgroup, CgroupError> {
        if self.version == Version::V2 {
            self.delegate_memory()?;
        }
        let dir = self.dir.join(name);
        fs::create_dir(&dir).map_err(|source| CgroupError::Create { path: dir.clone(), source })?;
        let child = MemoryCgroup { version: self.version, dir };
        let limit_file = child.file("memory.limit_in_bytes", "memory.max");
        if let Err(source) = fs::write(&limit_file, limit.to_string()) {
            let _ = fs::remove_dir(&child.dir);
            return Err(CgroupError::Limit { path: limit_file, limit, source });
        }
        Ok(child)
    }

    /// On v2, enables the memory controller for this cgroup's children. A
    /// cgroup with processes of its own may not (the "no internal processes"
    /// rule), so crashwatch first moves itself into a leaf of its own.
    fn delegate_memory(&self) -> Result<(), CgroupError> {
        let control = self.dir.join("cgroup.subtree_control");
        if fs::read_to_string(&control).is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
            return Ok(());
        }
        let enable = || fs::write(&control, "+memory");
        if enable().is_ok() {
            return Ok(());
        }
        let leaf = self.dir.join("crashwatch-supervisor");
        let moved = fs::create_dir_all(&leaf)
            .and_then(|()| fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()));
        moved.and_then(|()| enable()).map_err(|source| CgroupError::Delegate { path: self.dir.clone(), source })
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|source| CgroupError::Join {
            pid,
            path: self.dir.clone(),
            source,
        })
    }

    /// Removes this cgroup; fails while processes are still in it.
    pub fn remove(&self) -> io::Result<()> {
        fs::remove_dir(&self.dir)
    }
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` per line).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
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
mod tests {
    use super::*;

    // Read off this project's machines (v1, a memory cgroup per session).
    const V1_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/941ccc\n1:cpu:/\n0::/\n";
    const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
    // A systemd host on the unified hierarchy.
    const V2_CGROUP: &str = "0::/system.slice/app.service\n";
    const V2_MOUNTS: &str = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    // Inside a container: the mount shows only the container's subtree.
    const CONTAINER_MOUNTS: &str =
        "600 590 0:23 /system.slice/docker-abc.scope /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn finds_a_v1_memory_cgroup() {
        let cg = locate(V1_CGROUP, V1_MOUNTS).unwrap();
        assert_eq!(cg, MemoryCgroup { version: Version::V1, dir: "/sys/fs/cgroup/memory/process_api/941ccc".into() });
    }

    #[test]
    fn finds_a_v2_cgroup_on_the_host_and_in_a_container() {
        let cg = locate(V2_CGROUP, V2_MOUNTS).unwrap();
        assert_eq!(cg, MemoryCgroup { version: Version::V2, dir: "/sys/fs/cgroup/system.slice/app.service".into() });
        let cg = locate("0::/system.slice/docker-abc.scope\n", CONTAINER_MOUNTS).unwrap();
        assert_eq!(cg.dir, Path::new("/sys/fs/cgroup"));
        // With a cgroup namespace the path is already relative to the mount.
        let cg = locate("0::/\n", CONTAINER_MOUNTS).unwrap();
        assert_eq!(cg.dir, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn no_memory_cgroup_mounted() {
        assert_eq!(locate(V1_CGROUP, "22 1 253:1 / / rw - ext4 /dev/vda1 rw\n"), None);
    }

    #[test]
    fn reads_oom_kill_counters_of_both_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(v1, "oom_kill"), Some(3));
        assert_eq!(keyed_value(v2, "oom_kill"), Some(2));
        assert_eq!(keyed_value(v2, "oom"), Some(2));
        assert_eq!(keyed_value("oom_kill_disable 0\n", "oom_kill"), None);
    }

    #[test]
    fn reads_the_inactive_page_cache_of_both_versions() {
        // v1 lists the cgroup's own counters, then the hierarchical totals.
        let v1 = "cache 2138112\nrss 1900544\ninactive_file 1060864\ntotal_cache 4276224\n\
                  total_inactive_file 2121728\n";
        assert_eq!(keyed_value(v1, "total_inactive_file"), Some(2121728));
        let v2 = "anon 1200128\nfile 4096\nactive_file 0\ninactive_file 4096\n";
        assert_eq!(keyed_value(v2, "inactive_file"), Some(4096));
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        assert_eq!(unescape_octal(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_octal(r"/plain\"), r"/plain\");
    }
}
