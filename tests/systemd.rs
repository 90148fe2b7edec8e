//! Fitting systemd: the unit files verify, crashwatch's lines carry journald
//! priorities when stderr is the journal, and a Type=notify server's
//! READY=1 reaches systemd through crashwatch.

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Runs `systemd-analyze verify` on `unit` (with its drop-ins beside it) and
/// requires silence: an unknown key is only a warning, not a failure.
fn verify(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is needed (.ci/test installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{}: {stderr}", unit.display());
}

/// A copy of a unit file whose commands point at binaries that exist here.
fn localized(src: &Path, dest: &Path) {
    let text = std::fs::read_to_string(src).unwrap();
    let text = text
        .replace("/usr/local/bin/crashwatch", env!("CARGO_BIN_EXE_crashwatch"))
        .replace("/usr/local/bin/myserver", "/bin/sleep");
    std::fs::write(dest, text).unwrap();
}

#[test]
fn unit_files_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("crashwatch@demo.service");
    localized(&units.join("crashwatch@.service"), &instance);
    let dropins = dir.path().join("crashwatch@demo.service.d");
    std::fs::create_dir(&dropins).unwrap();
    localized(&units.join("examples/notify.conf"), &dropins.join("notify.conf"));
    verify(&instance);

    let sender = dir.path().join("crashwatch-send.service");
    localized(&units.join("crashwatch-send.service"), &sender);
    verify(&sender);

    let existing = dir.path().join("myserver.service");
    std::fs::write(&existing, "[Unit]\nDescription=a server\n[Service]\nExecStart=/bin/true\n").unwrap();
    let dropins = dir.path().join("myserver.service.d");
    std::fs::create_dir(&dropins).unwrap();
    localized(&units.join("examples/wrap-existing.conf"), &dropins.join("crashwatch.conf"));
    verify(&existing);

    // A monitored job and the timer that starts it, verified together.
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    localized(&units.join("examples/backup.service"), &jobs.join("backup.service"));
    localized(&units.join("examples/backup.timer"), &jobs.join("backup.timer"));
    verify(&jobs.join("backup.timer"));
    verify(&jobs.join("backup.service"));
}

/// Runs crashwatch with stderr on a pipe; `journal` sets JOURNAL_STREAM to
/// that pipe's device and inode, as systemd does for the journal's socket.
fn stderr_with_journal_stream(args: &[&str], journal: Option<&str>) -> String {
    let spool = tempfile::tempdir().unwrap();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let stat = nix::sys::stat::fstat(writer.as_fd()).unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(args).stdout(Stdio::null()).stderr(writer);
    match journal {
        Some("this pipe") => cmd.env("JOURNAL_STREAM", format!("{}:{}", stat.st_dev, stat.st_ino)),
        Some(other) => cmd.env("JOURNAL_STREAM", other),
        None => cmd.env_remove("JOURNAL_STREAM"),
    };
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the pipe's write end
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
    child.wait().unwrap();
    text
}

#[test]
fn lines_carry_journald_priorities_only_when_stderr_is_the_journal() {
    let crash = ["run", "--", "sh", "-c", "exit 3"];
    // The summary names the executable that ran (`sh` is a link to dash or bash).
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let ran = sh.file_name().unwrap().to_str().unwrap();
    let text = stderr_with_journal_stream(&crash, Some("this pipe"));
    assert!(text.starts_with(&format!("<4>crashwatch: {ran} (pid ")), "{text}");
    assert!(text.lines().all(|l| l.starts_with("<4>crashwatch: ")), "{text}");

    let text = stderr_with_journal_stream(&["run", "--", "no-such-program"], Some("this pipe"));
    assert_eq!(text, "<3>crashwatch: error: cannot run no-such-program: command not found in PATH\n");

    // Another stream's identity, or none: plain lines.
    for journal in [Some("1:2"), None] {
        let text = stderr_with_journal_stream(&crash, journal);
        assert!(text.starts_with(&format!("crashwatch: {ran} (pid ")), "{journal:?}: {text}");
    }
}

#[test]
fn a_notify_servers_ready_reaches_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut child = crashwatch(spool.path())
        .args(["run", "--", "python3", "-c"])
        .arg(
            "import os, socket, sys\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             s.sendto(b'READY=1\\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])\n\
             sys.stdin.read()\n",
        )
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("no notification arrived");
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
