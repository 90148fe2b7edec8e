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
fn the_path_in_the_hierarchy_comes_from_the_mount() {
    let dir = Path::new("/sys/fs/cgroup/memory/process_api/941ccc/crashwatch-7-0");
    assert_eq!(path_in_hierarchy(dir, Version::V1, V1_MOUNTS).as_deref(), Some("/process_api/941ccc/crashwatch-7-0"));
    let dir = Path::new("/sys/fs/cgroup/crashwatch-7-0");
    assert_eq!(
        path_in_hierarchy(dir, Version::V2, CONTAINER_MOUNTS).as_deref(),
        Some("/system.slice/docker-abc.scope/crashwatch-7-0")
    );
    assert_eq!(path_in_hierarchy(Path::new("/sys/fs/cgroup"), Version::V2, V2_MOUNTS).as_deref(), Some("/"));
    assert_eq!(path_in_hierarchy(dir, Version::V1, V2_MOUNTS), None);
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
fn advice_follows_the_error_the_kernel_gave() {
    let dir = Path::new("/sys/fs/cgroup/job");
    let advice = |errno| Advice::for_error(&io::Error::from_raw_os_error(errno), dir).to_string();
    let uid = nix::unistd::geteuid().as_raw();
    assert!(advice(libc::EACCES).starts_with(&format!("; /sys/fs/cgroup/job is not delegated to uid {uid}, ")));
    assert!(advice(libc::EPERM).contains("systemd: Delegate=yes"));
    assert!(advice(libc::ENOENT).starts_with(
        "; the parent of /sys/fs/cgroup/job does not give it the memory controller: write +memory to \
         /sys/fs/cgroup/cgroup.subtree_control (systemd: "
    ));
    assert!(
        advice(libc::EROFS).starts_with("; the cgroup filesystem is mounted read-only here, as in a container: drop")
    );
    assert_eq!(advice(libc::EIO), "");
    // Every piece of advice ends with the way around it.
    assert!(advice(libc::EROFS).ends_with("whose OOM kills crashwatch recognises as well"));
    // Who shares the cgroup, in the grammar of their number.
    let shared = |pids: Vec<i32>| Advice::Shared { dir: dir.into(), pids }.to_string();
    assert!(shared(vec![7]).starts_with("; process 7 shares /sys/fs/cgroup/job with crashwatch, and cgroup v2 "));
    assert!(shared(vec![7, 9]).starts_with("; processes 7, 9 share /sys/fs/cgroup/job with crashwatch, and "));
    assert!(shared(vec![]).starts_with("; cgroup v2 gives no controller to the children of a cgroup that has "));
}

#[test]
fn mount_points_with_spaces_are_unescaped() {
    assert_eq!(unescape_octal(r"/mnt/with\040space"), "/mnt/with space");
    assert_eq!(unescape_octal(r"/plain\"), r"/plain\");
}
