//! A spool someone else controls: crashwatch (run as root here) refuses it
//! with a message that names the path and what to do, writes nothing
//! through a link planted in it, changes the mode of nothing a link points
//! to, and the program still runs. And commands that only read create
//! nothing.

#[path = "common/mod.rs"]
mod bin;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use bin::{LIMIT, crashwatch, run_with_timeout};

const DSN: &str = "http://e12d836b15bb49d7bbf99e64295d995b@127.0.0.1:9/42";

/// Every path under `dir`, with its mode.
fn tree(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        out.push((entry.path().display().to_string(), meta.mode()));
        if meta.is_dir() {
            out.extend(tree(&entry.path()));
        }
    }
    out.sort();
    out
}

fn run(spool: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = crashwatch(spool);
    cmd.args(args);
    let out = run_with_timeout(cmd, LIMIT);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A directory outside the spool with a file in it, mode 0755.
fn target() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("keep"), b"mine").unwrap();
    dir
}

#[test]
fn a_spool_that_is_a_link_is_refused_and_nothing_is_written_through_it() {
    let target = target();
    let before = tree(target.path());
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("spool");
    std::os::unix::fs::symlink(target.path(), &link).unwrap();
    let refused = format!("refusing the spool directory {0}: {0} is a symbolic link", link.display());

    // The program runs, with its status; crashwatch says loudly why there
    // is no report.
    let (code, stderr) = run(&link, &["run", "--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(code, Some(128 + libc::SIGSEGV), "{stderr}");
    assert!(stderr.contains(&format!("crashwatch: error: {refused}")), "{stderr}");
    assert!(stderr.contains("the program runs, but its crashes are NOT recorded"), "{stderr}");
    assert!(stderr.contains("the report was not saved: the spool directory is unusable"), "{stderr}");

    for args in [&["send", "--dsn", DSN][..], &["list"], &["show"], &["dump", "--output", "/dev/null"]] {
        let (code, stderr) = run(&link, args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&refused), "{args:?}: {stderr}");
    }
    assert_eq!(tree(target.path()), before, "nothing written or chmod'ed through the link");
}

#[test]
fn a_linked_outbox_is_refused_and_what_it_points_to_is_untouched() {
    let target = target();
    let before = tree(target.path());
    let spool = tempfile::tempdir().unwrap();
    let outbox = spool.path().join("outbox");
    std::os::unix::fs::symlink(target.path(), &outbox).unwrap();
    let refused = format!("refusing the spool directory {0}: {0} is a symbolic link", outbox.display());

    let (code, stderr) = run(spool.path(), &["run", "--dsn", DSN, "--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(code, Some(128 + libc::SIGSEGV), "{stderr}");
    assert!(stderr.contains(&format!("reports cannot be sent to http://***@127.0.0.1:9/42: {refused}")), "{stderr}");
    // The report itself is kept.
    assert_eq!(bin::reports(spool.path()).len(), 1);

    let (code, stderr) = run(spool.path(), &["send", "--dsn", DSN]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&refused), "{stderr}");
    assert_eq!(tree(target.path()), before, "nothing written or chmod'ed through the link");
}

#[test]
fn a_spool_another_user_owns_or_anyone_may_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    nix::unistd::chown(&spool, Some(nix::unistd::Uid::from_raw(65534)), Some(nix::unistd::Gid::from_raw(65534)))
        .unwrap();
    let (code, stderr) = run(&spool, &["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "crashwatch: error: refusing the spool directory {0}: it belongs to uid 65534, not to root: its owner \
             could make crashwatch write where they choose; `chown root {0}` if it is meant for crashwatch, or \
             choose another with --spool-dir",
            spool.display()
        )),
        "{stderr}"
    );
    let (code, stderr) = run(&spool, &["list"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("it belongs to uid 65534, not to root"), "{stderr}");
    assert!(tree(&spool).is_empty(), "{:?}", tree(&spool));

    // Root's, but anyone may write in it.
    nix::unistd::chown(&spool, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(0))).unwrap();
    let (code, stderr) = run(&spool, &["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, Some(3));
    assert!(
        stderr.contains(&format!(
            "refusing the spool directory {0}: other users can write in it (mode 0777): `chmod 0700 {0}`",
            spool.display()
        )),
        "{stderr}"
    );
    assert!(tree(&spool).is_empty(), "{:?}", tree(&spool));
}

#[test]
fn a_link_planted_among_the_reports_is_not_followed() {
    let target = target();
    let spool = tempfile::tempdir().unwrap();
    let (code, _) = run(spool.path(), &["run", "--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(code, Some(128 + libc::SIGSEGV));
    let id = bin::only_report(spool.path())["id"].as_str().unwrap().to_owned();
    // A fake report and a fake state file pointing elsewhere.
    std::fs::write(target.path().join("unfinished.json"), b"{}").unwrap();
    let before = tree(target.path());
    let fake = "0123456789abcdef0123456789abcdef";
    std::os::unix::fs::symlink(target.path(), spool.path().join("reports").join(fake)).unwrap();
    std::os::unix::fs::symlink(target.path().join("keep"), spool.path().join("throttle.json")).unwrap();

    let reports = bin::reports(spool.path());
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["id"], id);
    let (code, stderr) = run(spool.path(), &["send", "--dsn", DSN]);
    assert!(code.is_some(), "{stderr}");
    assert_eq!(tree(target.path()), before);
    assert_eq!(std::fs::read(target.path().join("keep")).unwrap(), b"mine");
}

#[test]
fn commands_that_only_read_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for spool in [&missing, &empty] {
        for args in [&["list"][..], &["list", "--json"], &["show"], &["send", "--dsn", DSN], &["doctor"]] {
            let (code, stderr) = run(spool, args);
            assert!(code.is_some(), "{args:?}: {stderr}");
            if args[0] == "send" {
                // Nothing to send is not a failure.
                assert_eq!(code, Some(0), "{stderr}");
                assert!(stderr.contains("0 sent to http://***@127.0.0.1:9/42"), "{stderr}");
            }
        }
    }
    assert!(!missing.exists());
    assert!(tree(&empty).is_empty(), "{:?}", tree(&empty));
}
