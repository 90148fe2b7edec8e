use super::*;

#[test]
fn reads_kib_fields() {
    let status = "Name:\tpython3\nVmHWM:\t   71972 kB\nVmRSS:\t   71960 kB\n";
    assert_eq!(status_kib(status, "VmRSS:"), Some(71960 * 1024));
    assert_eq!(status_kib(status, "VmHWM:"), Some(71972 * 1024));
    assert_eq!(status_kib(status, "VmSwap:"), None);
}

#[test]
fn thresholds_are_a_share_of_the_limit() {
    assert_eq!(Threshold { percent: 50, limit: 64 << 20 }.bytes(), 32 << 20);
    assert_eq!(Threshold { percent: 99, limit: 1000 }.bytes(), 990);
    assert_eq!(Threshold { percent: 1, limit: 150 }.bytes(), 1);
    // No overflow near the top of the range.
    assert_eq!(Threshold { percent: 99, limit: u64::MAX }.bytes(), (u128::from(u64::MAX) * 99 / 100) as u64);
}

#[test]
fn the_watch_fires_on_the_first_rise_only() {
    let mut watch = ThresholdWatch::new(Threshold { percent: 50, limit: 100 });
    assert_eq!(watch.observe(10), Change::None);
    assert_eq!(watch.observe(49), Change::None);
    // Reaching the threshold exactly counts.
    assert_eq!(watch.observe(50), Change::Rose { first: true });
    assert_eq!(watch.observe(90), Change::None);
    assert_eq!(watch.observe(20), Change::Fell);
    assert_eq!(watch.observe(20), Change::None);
    assert_eq!(watch.observe(75), Change::Rose { first: false });
    assert_eq!(watch.observe(5), Change::Fell);
    assert_eq!(watch.observe(100), Change::Rose { first: false });
}

#[test]
fn a_child_above_the_threshold_from_the_start_fires_at_once() {
    let mut watch = ThresholdWatch::new(Threshold { percent: 10, limit: 100 });
    assert_eq!(watch.observe(40), Change::Rose { first: true });
}

/// A trigger at 50% of a 1000-byte limit, and where its crossings arrive.
fn half_of_1000() -> (SnapshotTrigger, mpsc::Receiver<Crossing>) {
    let (fired_tx, fired) = mpsc::channel();
    let threshold = Threshold { percent: 50, limit: 1000 };
    (SnapshotTrigger { threshold, fire: Box::new(move |crossing| fired_tx.send(crossing).unwrap()) }, fired)
}

#[test]
fn the_sampler_fires_when_the_working_set_reaches_the_threshold() {
    // A cgroup v1 directory as the kernel shows it, written by the test.
    let dir = tempfile::tempdir().unwrap();
    let cgroup = MemoryCgroup { version: Version::V1, dir: dir.path().to_path_buf() };
    // Usage first: the sampler may read between the two writes, and the
    // states in between must stay below the threshold.
    let set = |usage: u64, inactive_file: u64| {
        std::fs::write(dir.path().join("memory.usage_in_bytes"), format!("{usage}\n")).unwrap();
        std::fs::write(dir.path().join("memory.stat"), format!("total_inactive_file {inactive_file}\n")).unwrap();
    };
    // Usage over the threshold, but mostly reclaimable page cache.
    set(900, 600);
    let (trigger, fired) = half_of_1000();
    let sampler =
        Sampler::start(std::process::id() as i32, Some(cgroup), false, Duration::from_secs(3600), Some(trigger))
            .unwrap();
    set(700, 100);
    let crossing = fired.recv_timeout(Duration::from_secs(60)).expect("the trigger fired");
    assert_eq!(crossing.usage, 600);
    assert_eq!(crossing.threshold, Threshold { percent: 50, limit: 1000 });
    sampler.finish();
    // The trigger was consumed: a second call was impossible by type.
    assert!(fired.recv_timeout(Duration::ZERO).is_err());
}

#[test]
fn samples_a_live_process_and_stops_at_once() {
    // The first sample is taken at start; finishing must not wait out
    // the (hour-long) interval.
    let sampler = Sampler::start(std::process::id() as i32, None, false, Duration::from_secs(3600), None).unwrap();
    let memory = sampler.finish();
    assert_eq!(memory.samples.len(), 1);
    assert!(memory.samples[0].rss.unwrap() > 0);
    assert!(memory.peak_rss.unwrap() >= memory.samples[0].rss.unwrap());
}

/// A cgroup v2 directory as the kernel shows it, written by the test; its
/// files are plain files, so `poll` never reports `memory.events` changed
/// and the periodic check is what fires.
fn fake_v2(usage: u64) -> (tempfile::TempDir, MemoryCgroup) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("memory.current"), format!("{usage}\n")).unwrap();
    std::fs::write(dir.path().join("memory.stat"), "inactive_file 0\n").unwrap();
    std::fs::write(dir.path().join("memory.high"), "max\n").unwrap();
    std::fs::write(dir.path().join("memory.events"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
    let cgroup = MemoryCgroup { version: Version::V2, dir: dir.path().to_path_buf() };
    (dir, cgroup)
}

#[test]
fn memory_high_is_set_at_the_point_and_given_back_after_the_snapshot() {
    let (dir, cgroup) = fake_v2(100);
    let high = dir.path().join("memory.high");
    let (trigger, fired) = half_of_1000();
    let sampler =
        Sampler::start(std::process::id() as i32, Some(cgroup), true, Duration::from_secs(3600), Some(trigger))
            .unwrap();
    // Set when the sampler started: the kernel would throttle at 500.
    assert_eq!(std::fs::read_to_string(&high).unwrap(), "500");
    std::fs::write(dir.path().join("memory.current"), "600\n").unwrap();
    let crossing = fired.recv_timeout(Duration::from_secs(60)).expect("the trigger fired");
    assert_eq!((crossing.usage, crossing.noticed_by), (600, Mechanism::Polling));
    // Held for the snapshot; given back once it is taken.
    sampler.snapshot_taken();
    sampler.finish();
    assert_eq!(std::fs::read_to_string(&high).unwrap(), "max");
}

#[test]
fn memory_high_is_given_back_when_no_snapshot_was_needed() {
    let (dir, cgroup) = fake_v2(100);
    let high = dir.path().join("memory.high");
    let (trigger, fired) = half_of_1000();
    let sampler =
        Sampler::start(std::process::id() as i32, Some(cgroup), true, Duration::from_secs(3600), Some(trigger))
            .unwrap();
    assert_eq!(std::fs::read_to_string(&high).unwrap(), "500");
    sampler.finish();
    assert!(fired.try_recv().is_err(), "below the threshold");
    assert_eq!(std::fs::read_to_string(&high).unwrap(), "max");
}

#[test]
fn memory_high_of_a_cgroup_crashwatch_did_not_make_is_not_touched() {
    let (dir, cgroup) = fake_v2(100);
    let high = dir.path().join("memory.high");
    let (trigger, fired) = half_of_1000();
    let sampler =
        Sampler::start(std::process::id() as i32, Some(cgroup), false, Duration::from_secs(3600), Some(trigger))
            .unwrap();
    sampler.finish();
    assert!(fired.try_recv().is_err(), "below the threshold");
    assert_eq!(std::fs::read_to_string(&high).unwrap(), "max\n", "never written");
}
