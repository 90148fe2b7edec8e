//! cgroup v2 on a real kernel. This project's machines run cgroup v1, so
//! the v2 paths are proven in a VM: Debian's kernel under QEMU (TCG), pure
//! cgroup v2, an initramfs of busybox, crashwatch and the test programs.
//! `testdata/vm/init.sh` runs the scenarios in it and records what it saw
//! on a serial port; the tests here assert on that record. One boot serves
//! every test. QEMU or the kernel missing is a failure, not a skip
//! (`.ci/test` installs them); `testdata/vm/README.md` says how to rerun the
//! VM by hand.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `--memory-limit` in the scenarios: 48M.
const LIMIT_BYTES: u64 = 48 << 20;
/// Far beyond a boot's ~30 s; `run.sh` also puts QEMU under `timeout`.
const BOOT_LIMIT: Duration = Duration::from_secs(400);
/// The unprivileged user of scenarios 3 and 4.
const USER: u32 = 1000;

/// What `init.sh` recorded: `(scenario, key, value)` in order.
struct Record {
    lines: Vec<(String, String, String)>,
}

static VM: LazyLock<Result<Record, String>> = LazyLock::new(boot);

fn boot() -> Result<Record, String> {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cgroup-v2-vm");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vm/run.sh");
    let mut cmd = Command::new(script);
    cmd.arg(env!("CARGO_BIN_EXE_crashwatch")).arg(&work);
    let started = Instant::now();
    let out = run_with_timeout(cmd, BOOT_LIMIT);
    // Not a threshold: the figure README.md's testdata/vm quotes.
    eprintln!("cgroup v2 VM: built and booted, every scenario run, in {:.1} s", started.elapsed().as_secs_f64());
    let console = std::fs::read_to_string(work.join("console.log")).unwrap_or_default();
    let results = std::fs::read_to_string(work.join("results.txt")).unwrap_or_default();
    let lines: Vec<(String, String, String)> = results
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next().unwrap_or("").to_string()))
        })
        .collect();
    let finished = lines.iter().any(|(s, k, v)| (s.as_str(), k.as_str(), v.as_str()) == ("end", "done", "ok"));
    if !out.status.success() || !finished {
        let tail: Vec<&str> = console.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!(
            "the VM did not run to its end ({}):\n{}{}\n--- results.txt ---\n{results}\n--- console.log (tail) ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        ));
    }
    Ok(Record { lines })
}

fn vm() -> &'static Record {
    match &*VM {
        Ok(record) => record,
        Err(e) => panic!("{e}"),
    }
}

impl Record {
    /// Every value recorded for `key` of `scenario`, in order.
    fn all(&self, scenario: &str, key: &str) -> Vec<&str> {
        self.lines.iter().filter(|(s, k, _)| s == scenario && k == key).map(|(_, _, v)| v.as_str()).collect()
    }

    /// The one value of `key` of `scenario`.
    fn one(&self, scenario: &str, key: &str) -> &str {
        match self.all(scenario, key)[..] {
            [value] => value,
            ref values => panic!("{scenario} {key}: expected one value, got {values:?}"),
        }
    }

    /// crashwatch's stderr in `scenario`, one string.
    fn stderr(&self, scenario: &str) -> String {
        self.all(scenario, "stderr").join("\n")
    }

    /// The one report crashwatch filed in `scenario`.
    fn report(&self, scenario: &str) -> Value {
        let reports = self.all(scenario, "report");
        assert_eq!(
            reports.len(),
            1,
            "{scenario}: {reports:#?}\n{}\n`crashwatch list` exited {:?}: {}",
            self.stderr(scenario),
            self.all(scenario, "list_status"),
            self.all(scenario, "list_stderr").join("\n")
        );
        serde_json::from_str(reports[0]).unwrap()
    }
}

/// The facts every OOM report in the VM shares: kind, exit status 137,
/// the OOM kill counted by the child's cgroup, the cgroup's limit and peak.
fn assert_oom_report(record: &Record, scenario: &str, cgroup_path: &str) -> Value {
    assert_eq!(record.one(scenario, "status"), "137", "{}", record.stderr(scenario));
    let report = record.report(scenario);
    assert_eq!(report["kind"], "oom", "{report:#}");
    assert_eq!(report["exit_code"], 137);
    assert_eq!(report["oom"]["cgroup_oom_kills"], 1, "{report:#}");
    let cgroup = &report["memory"]["cgroup"];
    assert_eq!(cgroup["version"], "v2");
    assert_eq!(cgroup["path"], cgroup_path);
    assert_eq!(cgroup["limit"], LIMIT_BYTES);
    let peak = cgroup["peak"].as_u64().unwrap();
    assert!(peak > LIMIT_BYTES / 2 && peak <= LIMIT_BYTES, "cgroup peak {peak}");
    let peak_rss = report["memory"]["peak_rss"].as_u64().unwrap();
    assert!(peak_rss > LIMIT_BYTES / 2 && peak_rss < 2 * LIMIT_BYTES, "peak RSS {peak_rss}");
    let stderr = record.stderr(scenario);
    assert!(stderr.contains("the kernel's OOM killer killed it: peak RSS "), "{stderr}");
    report
}

/// The name crashwatch gives the cgroup of run 0 of the child.
fn child_cgroup(report: &Value, parent: &str) -> String {
    let path = report["memory"]["cgroup"]["path"].as_str().unwrap();
    let name = path.strip_prefix(parent).and_then(|p| p.strip_prefix('/')).unwrap_or_else(|| panic!("{path}"));
    let pid: u32 = name.strip_prefix("crashwatch-").and_then(|n| n.strip_suffix("-0")).unwrap().parse().unwrap();
    format!("{parent}/crashwatch-{pid}-0")
}

/// `text` with the pid in the names of crashwatch's cgroups replaced by `PID`.
fn without_pids(text: &str) -> String {
    regex::Regex::new(r"crashwatch-\d+-").unwrap().replace_all(text, "crashwatch-PID-").into_owned()
}

fn assert_kernel_line(report: &Value, program: &str) {
    let pid = report["program"]["pid"].as_i64().unwrap();
    let line = report["oom"]["kernel_line"].as_str().unwrap_or_else(|| panic!("{report:#}"));
    assert!(line.contains(&format!("Killed process {pid} ({program})")), "{line}");
}

#[test]
fn the_vm_runs_pure_cgroup_v2() {
    let vm = vm();
    assert_eq!(vm.one("vm", "fstype"), "cgroup2");
    assert_eq!(vm.one("vm", "v1_hierarchies"), "0");
    assert!(vm.one("vm", "controllers").split(' ').any(|c| c == "memory"));
    // The kernel log needs CAP_SYSLOG, as on Debian hosts.
    assert_eq!(vm.one("vm", "dmesg_restrict"), "1");
}

#[test]
fn memory_limit_as_root_reports_the_oom_kill() {
    let vm = vm();
    let report = assert_oom_report(vm, "s1", &child_cgroup(&vm.report("s1"), "/sys/fs/cgroup"));
    assert_kernel_line(&report, "hog");
    assert!(vm.all("s1", "stdout").last().unwrap().starts_with("allocated "));
    // The root cgroup takes controllers despite its processes; crashwatch
    // enabled memory for its children and gave it back.
    assert_eq!(vm.one("s1", "subtree_before"), "");
    assert_eq!(vm.one("s1", "subtree_after"), "");
    assert_eq!(vm.one("s1", "cgroups"), "");
    // Without --memory-limit only the kernel log would tell there: the root
    // cgroup counts no OOM kills, and doctor says so.
    let doctor = vm.all("s1doctor", "stdout").join("\n");
    assert!(
        doctor.contains(
            "OK    cgroup  cgroup v2 memory controller at /sys/fs/cgroup: OOM kills are not counted there (no \
             memory.events), --memory-limit works"
        ),
        "{doctor}"
    );
}

#[test]
fn a_cgroup_with_memory_max_recognises_the_childs_oom_kill() {
    // systemd's MemoryMax=: no --memory-limit; crashwatch and the child
    // share the limited cgroup, whose memory.events counts the kill.
    let vm = vm();
    let report = assert_oom_report(vm, "s2", "/sys/fs/cgroup/svc");
    assert_kernel_line(&report, "hog");
    assert_eq!(vm.one("s2", "cgroups"), "", "crashwatch made no cgroup");
    assert_eq!(vm.one("s2", "rmdir"), "0");
}

#[test]
fn a_delegated_cgroup_works_for_an_unprivileged_user() {
    let vm = vm();
    for run in ["s3", "s3again"] {
        let report = assert_oom_report(vm, run, &child_cgroup(&vm.report(run), "/sys/fs/cgroup/deleg"));
        // Not root: the kernel log is closed, the cgroup's counter is the
        // one witness.
        assert_eq!(report["oom"].get("kernel_line"), None, "{report:#}");
    }
    // crashwatch moved itself into a leaf to enable the controller, and
    // undid both: the second run could join the cgroup at all.
    assert_eq!(vm.one("s3", "subtree_after"), "");
    assert_eq!(vm.one("s3", "cgroups"), "");
    let doctor = vm.all("s3doctor", "stdout").join("\n");
    assert!(
        doctor.contains(
            "cgroup v2 memory controller at /sys/fs/cgroup/deleg: OOM kills are counted, --memory-limit works"
        ),
        "{doctor}\n{}",
        vm.stderr("s3doctor")
    );
    assert_eq!(vm.one("s3", "cgroups_at_end"), "");
    assert_eq!(vm.one("s3", "rejoin"), "0", "a process can join the hand-made cgroup again");
    assert_eq!(vm.one("s3", "rmdir"), "0");
}

#[test]
fn a_cgroup_not_delegated_is_a_clear_error() {
    let vm = vm();
    let advice = format!(
        "is not delegated to uid {USER}, which crashwatch runs as: run crashwatch as root, or in a cgroup delegated \
         to its user (systemd: Delegate=yes; by hand: chown the cgroup and its cgroup.procs, cgroup.subtree_control \
         and cgroup.threads to the user), or drop --memory-limit and run crashwatch in a cgroup that has the limit \
         (systemd: MemoryMax=; docker: --memory), whose OOM kills crashwatch recognises as well: Permission denied \
         (os error 13)"
    );
    assert_eq!(vm.one("s4", "status"), "125");
    assert_eq!(
        vm.stderr("s4"),
        format!(
            "crashwatch: error: failed to enable the memory controller for the cgroups below /sys/fs/cgroup/nodeleg \
             (writing +memory to /sys/fs/cgroup/nodeleg/cgroup.subtree_control); /sys/fs/cgroup/nodeleg {advice}"
        )
    );
    assert_eq!(vm.all("s4", "report"), Vec::<&str>::new());
    assert_eq!(vm.one("s4", "cgroups"), "");
    assert_eq!(vm.one("s4", "rmdir"), "0");
    let doctor = vm.all("s4doctor", "stdout").join("\n");
    assert!(
        doctor.contains(
            "cgroup v2 at /sys/fs/cgroup/nodeleg: OOM kills are counted, but --memory-limit will fail: failed to \
             enable the memory controller"
        ),
        "{doctor}"
    );

    // The root cgroup, which gives memory to its children already.
    assert_eq!(vm.one("s4root", "status"), "125");
    assert_eq!(
        without_pids(&vm.stderr("s4root")),
        format!(
            "crashwatch: error: failed to create the cgroup /sys/fs/cgroup/crashwatch-PID-0; /sys/fs/cgroup {advice}"
        )
    );
}

#[test]
fn a_cgroup_shared_with_another_process_is_a_clear_error_and_left_as_found() {
    let vm = vm();
    assert_eq!(vm.one("s4busy", "status"), "125");
    let occupant = vm.one("s4busy", "occupant");
    assert_eq!(
        vm.stderr("s4busy"),
        format!(
            "crashwatch: error: failed to enable the memory controller for the cgroups below /sys/fs/cgroup/busy \
             (writing +memory to /sys/fs/cgroup/busy/cgroup.subtree_control); process {occupant} shares \
             /sys/fs/cgroup/busy with crashwatch, and cgroup v2 gives no controller to the children of a cgroup that \
             has processes of its own: run crashwatch as the only process of its cgroup (systemd: a service with \
             Delegate=yes), or drop --memory-limit and run crashwatch in a cgroup that has the limit (systemd: \
             MemoryMax=; docker: --memory), whose OOM kills crashwatch recognises as well: Device or resource busy \
             (os error 16)"
        )
    );
    // The leaf crashwatch tried is gone again.
    assert_eq!(vm.one("s4busy", "cgroups"), "");
    assert_eq!(vm.one("s4busy", "rmdir"), "0");
}

#[test]
fn a_cgroup_without_the_memory_controller_is_a_clear_error() {
    let vm = vm();
    assert_eq!(vm.one("s4nomem", "status"), "125");
    assert_eq!(
        vm.stderr("s4nomem"),
        "crashwatch: error: failed to enable the memory controller for the cgroups below \
         /sys/fs/cgroup/nomem/inner (writing +memory to /sys/fs/cgroup/nomem/inner/cgroup.subtree_control); the \
         parent of /sys/fs/cgroup/nomem/inner does not give it the memory controller: write +memory to \
         /sys/fs/cgroup/nomem/cgroup.subtree_control (systemd: MemoryAccounting=yes or Delegate=yes), or drop \
         --memory-limit and run crashwatch in a cgroup that has the limit (systemd: MemoryMax=; docker: --memory), \
         whose OOM kills crashwatch recognises as well: No such file or directory (os error 2)"
    );
    // Only the hand-made cgroup is there, and it can be removed.
    assert_eq!(vm.one("s4nomem", "cgroups"), "nomem/inner");
    assert_eq!(vm.one("s4nomem", "rmdir"), "0");
}

#[test]
fn a_read_only_cgroup_mount_is_a_clear_error() {
    let vm = vm();
    assert_eq!(vm.one("s4ro", "status"), "125");
    assert_eq!(
        without_pids(&vm.stderr("s4ro")),
        "crashwatch: error: failed to create the cgroup /sys/fs/cgroup/crashwatch-PID-0; the cgroup filesystem is \
         mounted read-only here, as in a container: drop --memory-limit and run crashwatch in a cgroup that has the \
         limit (systemd: MemoryMax=; docker: --memory), whose OOM kills crashwatch recognises as well: Read-only \
         file system (os error 30)"
    );
}

#[test]
fn an_oom_report_carries_the_snapshot_on_v2() {
    let vm = vm();
    let report = assert_oom_report(vm, "s5", &child_cgroup(&vm.report("s5"), "/sys/fs/cgroup"));
    assert_kernel_line(&report, "grow");
    assert_eq!(vm.all("s5", "stdout"), ["paused at 36 MiB"]);
    let snapshot = &report["snapshot"];
    assert_eq!(snapshot["threshold_percent"], 50);
    assert_eq!(snapshot["limit"], LIMIT_BYTES);
    let usage = snapshot["usage"].as_u64().unwrap();
    assert!((LIMIT_BYTES / 2..=LIMIT_BYTES).contains(&usage), "usage {usage}");
    let pid = report["program"]["pid"].as_i64().unwrap();
    assert_eq!((snapshot["pid"].as_i64(), snapshot["threads"].as_u64()), (Some(pid), Some(1)));
    assert_eq!(snapshot.get("minidump_error"), None, "{snapshot:#}");
    assert!(snapshot["minidump"]["size"].as_u64().unwrap() > 0);
    // Its stacks, symbolicated in the VM: the child was in its allocating
    // function (growing, or paused there, as the sampler saw it).
    let stacks: Value = serde_json::from_str(vm.one("s5", "stacks")).unwrap();
    assert_eq!(stacks["crash_reason"], "DUMP_REQUESTED");
    let index = stacks["crashing_thread"].as_u64().unwrap() as usize;
    let functions: Vec<&str> =
        stacks["threads"][index]["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str()).collect();
    let grow_to = functions.iter().position(|f| *f == "grow_to").unwrap_or_else(|| panic!("{functions:?}"));
    assert_eq!(functions[grow_to + 1], "main", "{functions:?}");
}

/// The function names of the frames of the thread a symbolicated dump
/// blames, innermost first.
fn blamed_functions(stacks: &Value) -> Vec<&str> {
    let index = stacks["crashing_thread"].as_u64().unwrap() as usize;
    stacks["threads"][index]["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str()).collect()
}

#[test]
fn a_sudden_spike_gets_its_snapshot_on_v2_through_memory_high() {
    // spike allocates 320 MiB at once into a 256M limit: memory.high at the
    // 70% point throttles it there and its event wakes crashwatch.
    let vm = vm();
    const SPIKE_LIMIT: u64 = 256 << 20;
    assert_eq!(vm.one("s6", "status"), "137", "{}", vm.stderr("s6"));
    let report = vm.report("s6");
    assert_eq!(report["kind"], "oom", "{report:#}");
    assert_eq!(report["oom"]["cgroup_oom_kills"], 1, "{report:#}");
    assert_eq!(report["memory"]["cgroup"]["limit"], SPIKE_LIMIT);
    assert_kernel_line(&report, "spike");
    let snapshot = &report["snapshot"];
    // The kernel's event, or the periodic check that runs beside it: on the
    // VM's one slow vCPU a check can land between the charge that crosses
    // memory.high and the event, raised as the allocator returns to user
    // space (after zeroing a huge page under TCG). Either way memory.high
    // held the child at the point, which is what got the snapshot taken.
    let noticed_by = snapshot["noticed_by"].as_str().unwrap();
    assert!(["cgroup-v2-high", "polling"].contains(&noticed_by), "{report:#}\n{}", vm.stderr("s6"));
    assert_eq!(snapshot["threshold_percent"], 70);
    let usage = snapshot["usage"].as_u64().unwrap();
    assert!((SPIKE_LIMIT * 70 / 100..=SPIKE_LIMIT).contains(&usage), "usage {usage}");
    assert_eq!(snapshot.get("minidump_error"), None, "{snapshot:#}");
    let stacks: Value = serde_json::from_str(vm.one("s6", "stacks")).unwrap();
    let functions = blamed_functions(&stacks);
    let allocate = functions.iter().position(|f| *f == "allocate").unwrap_or_else(|| panic!("{functions:?}"));
    assert_eq!(functions[allocate + 1], "main", "{functions:?}");
    let by = if noticed_by == "polling" { "periodic check" } else { "cgroup v2 memory.high event" };
    assert!(
        vm.stderr("s6").contains(&format!("--oom-snapshot 70%; by {by}): taking a snapshot")),
        "{}",
        vm.stderr("s6")
    );
}

#[test]
fn memory_high_is_given_back_after_the_snapshot() {
    // spike stays under the limit (200 MiB of 256) and lives on after its
    // snapshot; memory.high was read while it still ran.
    let vm = vm();
    let stderr = without_pids(&vm.stderr("s6hold"));
    assert_eq!(vm.one("s6hold", "status"), "0", "{stderr}");
    assert_eq!(vm.all("s6hold", "stdout"), ["done"]);
    assert!(
        stderr.contains("--oom-snapshot: the kernel wakes crashwatch at the threshold (cgroup v2 memory.high event)"),
        "{stderr}"
    );
    assert!(stderr.contains("snapshot of pid"), "{stderr}");
    assert!(
        stderr.contains("/sys/fs/cgroup/crashwatch-PID-0/memory.high given back its value max after the snapshot"),
        "{stderr}"
    );
    assert_eq!(vm.one("s6hold", "high_after"), "max");
    // The child did not die of it: no report, the snapshot discarded.
    assert_eq!(vm.all("s6hold", "report"), Vec::<&str>::new());
    assert!(stderr.contains("the memory snapshot was discarded"), "{stderr}");
}

#[test]
fn memory_high_of_a_cgroup_crashwatch_did_not_make_is_left_alone() {
    let vm = vm();
    let stderr = vm.stderr("s7");
    assert_eq!(vm.one("s7", "status"), "0", "{stderr}");
    // The point is the threshold plus the page cache then reclaimable.
    let polls = "--oom-snapshot: the memory is checked every 100 ms, with no notification from the kernel: \
                 /sys/fs/cgroup/svc2/memory.high is max, above the snapshot point (";
    let line = stderr.lines().find(|l| l.contains(polls)).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(" bytes), and crashwatch did not create that cgroup, so it does not change it"), "{line}");
    assert_eq!(vm.one("s7", "high_after"), "max");
    assert_eq!(vm.one("s7", "rmdir"), "0");
    let doctor = vm.all("s7doctor", "stdout").join("\n");
    assert!(
        doctor.contains(
            "OK    oomsnap --oom-snapshot with --memory-limit is woken by the kernel: cgroup v2 memory.high event, \
             which holds the child at the point (memory.high) until its snapshot is taken; in /sys/fs/cgroup/svc2, \
             with its own limit: a check every 100 ms, which a faster spike escapes (/sys/fs/cgroup/svc2/memory.high \
             is max, above the snapshot point (134217728 bytes), and crashwatch did not create that cgroup, so it \
             does not change it)"
        ),
        "{doctor}\n{}",
        vm.stderr("s7doctor")
    );
    // In the root cgroup, as root: the probe cgroup's memory.high works.
    let doctor = vm.all("s1doctor", "stdout").join("\n");
    assert!(
        doctor.contains(
            "OK    oomsnap --oom-snapshot with --memory-limit is woken by the kernel: cgroup v2 memory.high event, \
             which holds the child at the point (memory.high) until its snapshot is taken\n"
        ) || doctor.ends_with(
            "OK    oomsnap --oom-snapshot with --memory-limit is woken by the kernel: cgroup v2 memory.high event, \
             which holds the child at the point (memory.high) until its snapshot is taken"
        ),
        "{doctor}"
    );
}

#[test]
fn no_cgroup_crashwatch_made_is_left_behind() {
    assert_eq!(vm().one("end", "cgroups"), "");
}
