//! Hangs: a real server (testdata/hang_server.c) that stops answering,
//! under the real binary. Its health URL stops answering, or its systemd
//! watchdog pings stop (the test plays systemd); each time it is dumped
//! alive and a `hang` event with the blocked thread's frame reaches the
//! fake Relay, and passes Relay's normalizer.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{LIMIT, Lines, crashwatch, fixture, send_signal, wait_output};
use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use sentry_common::WAIT;
use sentry_common::normalize::assert_normalized_as_sent;
use sentry_common::relay::{FakeRelay, unused_port};
use serde_json::Value;

const RELEASE: &str = "server@3.0.0";

fn run_cmd(spool: &Path, dsn: &str, flags: &[&str], program: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn, "--release", RELEASE, "--environment", "test"]).args(flags).arg("--");
    cmd.args(program).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// A health check of `url` that finds a hang within about a second: every
/// 200 ms after 300 ms, two failures in a row.
fn fast_health_check(url: &str) -> [&str; 10] {
    [
        "--health-url",
        url,
        "--health-interval",
        "200ms",
        "--health-timeout",
        "1s",
        "--health-failures",
        "2",
        "--health-start-period",
        "300ms",
    ]
}

/// Kills crashwatch (and with it its traced child) when a test fails
/// before it ends it.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

fn guard(child: &Child) -> KillOnDrop {
    KillOnDrop(child.id() as i32)
}

async fn hang_events(relay: &FakeRelay, n: usize) -> Vec<Value> {
    relay.wait_until(&format!("{n} hang event(s)"), WAIT, |s| s.accepted_events().len() >= n).await;
    relay.with(|s| s.accepted_events().iter().map(|e| e.event().unwrap()).collect())
}

/// The hang event's exception, checked for what every hang event says.
fn hang_exception<'a>(event: &'a Value, mechanism: &str) -> &'a Value {
    assert_eq!(event["level"], "error", "{event:#}");
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "Hang", "{event:#}");
    assert_eq!(exception["mechanism"]["type"], mechanism, "{event:#}");
    assert_eq!(exception["mechanism"]["handled"], false, "{event:#}");
    exception
}

fn functions(stacktrace: &Value) -> Vec<String> {
    let frames = stacktrace["frames"].as_array().into_iter().flatten();
    frames.filter_map(|f| f["function"].as_str().map(str::to_owned)).collect()
}

/// The blocked thread's frames, innermost last (Sentry's order): the main
/// thread, in hang_here called by serve; the ticker thread is in `threads`.
fn assert_blocked_in_hang_here(event: &Value) {
    let exception = &event["exception"]["values"][0];
    let names = functions(&exception["stacktrace"]);
    let at = names.iter().position(|f| f == "hang_here").unwrap_or_else(|| panic!("no hang_here: {names:?}"));
    assert!(names[..at].iter().any(|f| f == "serve") && names.iter().any(|f| f == "main"), "{names:?}");
    let threads = event["threads"]["values"].as_array().unwrap();
    assert!(threads.len() >= 2, "{threads:#?}");
    assert!(threads.iter().any(|t| t["name"] == "ticker"), "{threads:#?}");
    let blocked = threads.iter().find(|t| t["crashed"] == true).unwrap();
    assert_eq!(blocked["id"], exception["thread_id"]);
}

/// Ends crashwatch (SIGTERM, forwarded to the hung child) and returns its
/// stderr.
async fn stop(child: Child) -> String {
    send_signal(&child, Signal::SIGTERM);
    let out = tokio::task::spawn_blocking(move || wait_output(child, LIMIT)).await.unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_health_url_stops_answering_is_dumped_alive() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let port = unused_port().port().to_string();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let server = fixture("hang_server");
    let flags = fast_health_check(&url);
    // Three checks answered, then the server hangs.
    let mut child =
        run_cmd(spool.path(), &relay.dsn(), &flags, &[server.to_str().unwrap(), "3", &port]).spawn().unwrap();
    let _guard = guard(&child);
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("hanging now", LIMIT);
    let events = hang_events(&relay, 1).await;
    // Dumped alive: crashwatch and the server still run.
    assert!(child.try_wait().unwrap().is_none(), "crashwatch ended");
    let event = &events[0];
    let exception = hang_exception(event, "hang");
    assert!(exception["value"].as_str().unwrap().contains(&url), "{exception:#}");
    assert_eq!(event["tags"]["hang.check"], "health-url");
    assert_eq!(event["tags"]["hang.failures"], "2");
    assert_eq!(event["contexts"]["hang"]["failures"], 2);
    assert_eq!(event["contexts"]["hang"]["url"], url.as_str());
    assert!(event["contexts"]["hang"]["hung_seconds"].as_f64().unwrap() > 0.0, "{event:#}");
    assert_blocked_in_hang_here(event);
    assert_normalized_as_sent(&events);

    let err = stop(child).await;
    // One capture per hang: the failing checks after it are not another.
    assert_eq!(relay.with(|s| s.accepted_events().len()), 1, "{err}");
    // The run's session ended errored.
    relay
        .wait_until("the final session update", WAIT, |s| s.items_of("session").iter().any(|u| u["status"] != "ok"))
        .await;
    let updates = relay.with(|s| s.items_of("session"));
    let last = updates.last().unwrap();
    assert!(last["errors"].as_u64() >= Some(1), "{updates:#?}");
    assert!(updates.iter().any(|u| u["status"] == "ok" && u["errors"] == 1), "{updates:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_hang_ends_the_hung_server_and_runs_it_again() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let port = unused_port().port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let server = fixture("hang_server");
    let flags = [
        &fast_health_check(&url)[..],
        &[
            "--restart",
            "on-hang",
            "--restart-delay",
            "100ms",
            // Every hang is sent, not counted as a repeat of the first.
            "--group-window",
            "0",
        ],
    ]
    .concat();
    let child = run_cmd(spool.path(), &relay.dsn(), &flags, &[server.to_str().unwrap(), "1", &port]).spawn().unwrap();
    let _guard = guard(&child);
    let events = hang_events(&relay, 2).await;
    let err = stop(child).await;
    let pids: Vec<_> = events.iter().map(|e| e["contexts"]["hang"]["pid"].as_i64().unwrap()).collect();
    assert_ne!(pids[0], pids[1], "the same process hung twice: it was not restarted\n{err}");
    for event in &events {
        hang_exception(event, "hang");
        assert_blocked_in_hang_here(event);
    }
    assert!(err.contains("ending the hung program"), "{err}");
    assert!(err.contains("restarting the program"), "{err}");
    // The end of a run crashwatch ended is kept, as a stop, with the hang's id.
    let reports = common::reports(spool.path());
    let ended: Vec<_> = reports.iter().filter(|r| r["kind"] == "stopped").collect();
    assert!(!ended.is_empty(), "{reports:#?}");
    let id = events[0]["event_id"].as_str().unwrap();
    assert!(ended.iter().any(|r| r["notes"].to_string().contains(id)), "{reports:#?}");
    assert_normalized_as_sent(&events);
}

/// One notification as systemd receives it: the text and the sender's pid.
fn receive(socket: &UnixDatagram) -> (String, i32) {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).expect("a notification");
    let pid = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
            _ => None,
        })
        .expect("credentials");
    let n = msg.bytes;
    (String::from_utf8_lossy(&buf[..n]).into_owned(), pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_recovers_and_hangs_again_is_dumped_each_time() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let port = unused_port().port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let server = fixture("hang_server");
    // Every hang is sent, not counted as a repeat of the first.
    let flags = [&fast_health_check(&url)[..], &["--group-window", "0"]].concat();
    // Each hang lasts 3 s; it then answers 5 requests (the checks that
    // timed out while it hung among them) and hangs again.
    let child = run_cmd(spool.path(), &relay.dsn(), &flags, &[server.to_str().unwrap(), "5", &port, "recover"])
        .spawn()
        .unwrap();
    let _guard = guard(&child);
    let events = hang_events(&relay, 2).await;
    let err = stop(child).await;
    let pids: Vec<_> = events.iter().map(|e| e["contexts"]["hang"]["pid"].as_i64().unwrap()).collect();
    assert_eq!(pids[0], pids[1], "one process, two hangs\n{err}");
    assert_ne!(events[0]["event_id"], events[1]["event_id"]);
    // The second hang of the same process has its own snapshot, not none.
    for event in &events {
        hang_exception(event, "hang");
        assert_blocked_in_hang_here(event);
    }
}

/// The test playing systemd: a NOTIFY_SOCKET in a directory of its own
/// (kept while the guard lives) that reports its senders' credentials.
fn notify_socket() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    setsockopt(&socket, sockopt::PassCred, &true).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    (dir, path, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_pinging_the_watchdog_is_dumped_before_systemd_acts() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    // The test is systemd.
    let (_dir, path, socket) = notify_socket();
    let server = fixture("hang_server");
    let mut cmd = run_cmd(spool.path(), &relay.dsn(), &[], &[server.to_str().unwrap(), "3", "0", "notify"]);
    cmd.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "4000000");
    let mut child = cmd.spawn().unwrap();
    let _guard = guard(&child);
    let mut lines = Lines::new(child.stdout.take().unwrap());
    let port: u16 = lines.wait_for("port ", LIMIT).trim().trim_start_matches("port ").parse().unwrap();
    let crashwatch_pid = child.id() as i32;
    // READY=1 arrives from crashwatch, the main process, without the
    // child's MAINPID=.
    assert_eq!(receive(&socket), ("READY=1".to_string(), crashwatch_pid));
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        conn.read_to_end(&mut Vec::new()).unwrap();
        assert_eq!(receive(&socket), ("WATCHDOG=1".to_string(), crashwatch_pid));
    }
    // The pings stop: 3/4 of WatchdogSec later, the hang is caught.
    let events = hang_events(&relay, 1).await;
    assert!(child.try_wait().unwrap().is_none(), "crashwatch ended");
    let event = &events[0];
    hang_exception(event, "watchdog");
    assert_eq!(event["tags"]["hang.check"], "watchdog");
    assert_eq!(event["contexts"]["hang"]["pings"], 3);
    assert_eq!(event["contexts"]["hang"]["watchdog_seconds"], 4.0);
    assert!(event["contexts"]["hang"]["hung_seconds"].as_f64().unwrap() >= 3.0, "{event:#}");
    assert_blocked_in_hang_here(event);
    assert_normalized_as_sent(&events);
    // The child saw crashwatch's socket, and no WATCHDOG_PID.
    let pid = event["contexts"]["hang"]["pid"].as_i64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("WATCHDOG_USEC=4000000") && !environ.contains("WATCHDOG_PID="), "{environ}");
    assert!(!environ.contains(&format!("NOTIFY_SOCKET={}", path.display())), "{environ}");
    stop(child).await;
}

#[test]
fn bad_hang_options_are_usage_errors() {
    let spool = tempfile::tempdir().unwrap();
    for flags in [
        &["--health-url", "ftp://127.0.0.1/"][..],
        &["--health-url", "http://127.0.0.1/", "--health-failures", "0"],
        &["--health-url", "http://127.0.0.1/", "--health-interval", "0"],
        &["--health-url", "http://127.0.0.1/", "--health-timeout", "soon"],
    ] {
        let out = crashwatch(spool.path()).arg("run").args(flags).args(["--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--health-"), "{flags:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_server_the_watchdog_caught_keeps_systemd_fed_until_it_is_ready() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (_dir, path, socket) = notify_socket();
    let server = fixture("hang_server");
    let flags = ["--restart", "on-hang", "--restart-delay", "100ms"];
    // It says READY=1, then hangs at once: it never pings.
    let mut cmd = run_cmd(spool.path(), &relay.dsn(), &flags, &[server.to_str().unwrap(), "0", "0", "notify"]);
    cmd.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "2000000");
    let child = cmd.spawn().unwrap();
    let _guard = guard(&child);
    let crashwatch_pid = child.id() as i32;
    assert_eq!(receive(&socket), ("READY=1".to_string(), crashwatch_pid));
    // Caught, ended, restarted: crashwatch pings for it in between.
    let mut between = Vec::new();
    loop {
        let (message, pid) = receive(&socket);
        assert_eq!(pid, crashwatch_pid);
        if message == "READY=1" {
            break;
        }
        between.push(message);
    }
    assert!(!between.is_empty() && between.iter().all(|m| m == "WATCHDOG=1"), "{between:?}");
    let events = hang_events(&relay, 1).await;
    hang_exception(&events[0], "watchdog");
    let err = stop(child).await;
    assert!(err.contains("ending the hung program"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_restart_never_systemds_sigabrt_is_a_crash_linked_to_the_hang() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let port = unused_port().port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let server = fixture("hang_server");
    let flags = ["--health-url", &url, "--health-interval", "200ms", "--health-timeout", "1s"];
    let child = run_cmd(spool.path(), &relay.dsn(), &flags, &[server.to_str().unwrap(), "0", &port]).spawn().unwrap();
    let _guard = guard(&child);
    let hang = hang_events(&relay, 1).await.remove(0);
    // What systemd's watchdog does to its main process: SIGABRT, which
    // crashwatch forwards to the hung server.
    send_signal(&child, Signal::SIGABRT);
    let out = tokio::task::spawn_blocking(move || wait_output(child, LIMIT)).await.unwrap();
    assert_eq!(out.status.code(), Some(134), "{}", String::from_utf8_lossy(&out.stderr));
    let events = hang_events(&relay, 2).await;
    let crash = &events[1];
    assert_eq!(crash["level"], "fatal", "{crash:#}");
    assert_eq!(crash["exception"]["values"][0]["mechanism"]["meta"]["signal"]["name"], "SIGABRT", "{crash:#}");
    let notes = crash["contexts"]["crashwatch"]["notes"].to_string();
    assert!(notes.contains(hang["event_id"].as_str().unwrap()), "{notes}");
    assert_eq!(crash["tags"]["hang.event_id"], hang["event_id"], "{crash:#}");
    // Still the blocked frame: the crash's own dump.
    assert!(functions(&crash["exception"]["values"][0]["stacktrace"]).iter().any(|f| f == "hang_here"), "{crash:#}");
}
