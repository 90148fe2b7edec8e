//! Release Health: each run of the child is a Sentry session.
//!
//! A session update (`session` item) says what became of one run:
//!
//! ```text
//! {"sid": uuid, "did": host id, "seq": n, "init": true on the first update,
//!  "started": RFC 3339, "timestamp": RFC 3339, "duration": seconds,
//!  "status": ok | exited | crashed | abnormal, "errors": n,
//!  "attrs": {"release": "…", "environment": "…"}}
//! ```
//!
//! A terminal status is final. Relay turns updates into counts (a session
//! when `init` is set, a crash when `crashed`…), so each run must send
//! `init` exactly once. Aggregates (`sessions` item) are those counts sent
//! directly, per minute in which runs started; crashwatch sends them for the
//! runs of a crash loop (see [`super::session_budget`]).
//!
//! How a run's end is classified ([`Outcome::of`]):
//!
//! | the run                                         | status   | errors |
//! |-------------------------------------------------|----------|--------|
//! | exit 0, or an orderly stop crashwatch forwarded | exited   | 0      |
//! | a non-zero exit with no crash story             | exited   | 1 (Sentry's "errored") |
//! | a fatal signal, an OOM kill, a panic            | crashed  | 1      |
//! | any other signal (a SIGKILL that was no OOM…)   | abnormal | 1      |
//! | exit 0 or a stop, after a problem it survived   | exited   | 1 (errored) |
//!
//! `did` is this host's id, derived from `/etc/machine-id` the way systemd
//! derives an application-specific id (`systemd-id128 machine-id
//! --app-specific=…`): HMAC-SHA256 keyed with the machine id, so the machine
//! id itself never leaves the host and the value is useless to any other
//! application.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::process::{ChildStatus, signals};
use crate::report::Kind;
use crate::sentry::envelope::format_timestamp;

/// crashwatch's application id for systemd's app-specific machine ids.
pub const APP_ID: &str = "6504062f15bc44c6a0e0e3c5102fa27e";

/// A session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Running.
    Ok,
    /// Ended on its own or when asked to.
    Exited,
    /// Died of a crash.
    Crashed,
    /// Died in a way that is neither.
    Abnormal,
}

/// How a run ended, for Release Health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0, or an orderly stop.
    Exited,
    /// A non-zero exit without a crash story.
    Errored,
    /// A fatal signal, an OOM kill, a runtime's crash.
    Crashed,
    /// Killed by a signal that is no crash and that nobody asked for.
    Abnormal,
}

impl Outcome {
    /// The outcome of a run that ended with `status`; `kind` is its
    /// report's kind when it had one (any end but exit 0), `caught` whether
    /// crashwatch caught its crash.
    pub fn of(status: ChildStatus, kind: Option<Kind>, caught: bool) -> Outcome {
        match kind {
            _ if caught => Outcome::Crashed,
            None => Outcome::Exited,
            Some(Kind::Stopped) => Outcome::Exited,
            Some(Kind::Oom | Kind::Panic) => Outcome::Crashed,
            Some(Kind::Exit) => Outcome::Errored,
            Some(Kind::Signal) => match status {
                ChildStatus::Signaled { signal, .. } if signals::CRASH.contains(&signal) => Outcome::Crashed,
                _ => Outcome::Abnormal,
            },
        }
    }

    /// The outcome of a run that also had `errors` problems it survived
    /// (live panics, error lines): a healthy end becomes `errored`, as a
    /// session with a handled error is in Sentry; a crash stays a crash.
    pub fn with_errors(self, errors: u64) -> Outcome {
        match self {
            Outcome::Exited if errors > 0 => Outcome::Errored,
            other => other,
        }
    }

    /// The status of the session's final update.
    pub fn status(self) -> Status {
        match self {
            Outcome::Exited | Outcome::Errored => Status::Exited,
            Outcome::Crashed => Status::Crashed,
            Outcome::Abnormal => Status::Abnormal,
        }
    }

    /// The session's `errors`.
    pub fn errors(self) -> u64 {
        u64::from(self != Outcome::Exited)
    }
}

/// `attrs` of sessions and aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// Required by Relay: without a release there are no sessions.
    pub release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// One `session` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub sid: String,
    pub did: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    pub started: String,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    pub status: Status,
    pub errors: u64,
    pub attrs: Attrs,
}

/// One run's session: what all its updates share.
#[derive(Debug, Clone)]
pub struct Session {
    sid: uuid::Uuid,
    did: String,
    started: SystemTime,
    attrs: Attrs,
    /// The last `seq` sent: each update's is larger.
    seq: u64,
}

impl Session {
    /// A new session of a run that started at `started`.
    pub fn new(started: SystemTime, did: String, attrs: Attrs) -> Session {
        Session { sid: uuid::Uuid::new_v4(), did, started, attrs, seq: 0 }
    }

    /// The session id.
    pub fn sid(&self) -> String {
        self.sid.hyphenated().to_string()
    }

    /// The update that opens the session while the run goes on.
    pub fn start(&mut self, now: SystemTime) -> Update {
        self.update(true, Status::Ok, 0, now, None)
    }

    /// An update of the running session: it has had `errors` errors (the
    /// problems it survived). Sentry counts a session with errors that
    /// ends well as errored, one that crashes as crashed.
    pub fn errored(&mut self, errors: u64, now: SystemTime) -> Update {
        self.update(false, Status::Ok, errors, now, None)
    }

    /// The final update, after `ran_for`; `init` when Relay never got the
    /// start (or there was none).
    pub fn end(&mut self, outcome: Outcome, init: bool, now: SystemTime, ran_for: Duration) -> Update {
        self.update(init, outcome.status(), outcome.errors(), now, Some(ran_for.as_secs_f64()))
    }

    fn update(&mut self, init: bool, status: Status, errors: u64, now: SystemTime, duration: Option<f64>) -> Update {
        // A logical clock: milliseconds, strictly increasing within the session.
        self.seq = unix_millis(now).max(self.seq + 1);
        Update {
            sid: self.sid(),
            did: self.did.clone(),
            seq: self.seq,
            init,
            started: format_timestamp(self.started),
            timestamp: format_timestamp(now.max(self.started)),
            duration,
            status,
            errors,
            attrs: self.attrs.clone(),
        }
    }
}

/// One `sessions` item: counts of runs per minute in which they started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    pub aggregates: Vec<Bucket>,
    pub attrs: Attrs,
}

/// The runs that started in one minute, by how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// The minute, RFC 3339 with zero seconds.
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exited: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errored: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashed: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abnormal: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Bucket {
    /// Counts one run that ended with `outcome`.
    pub fn add(&mut self, outcome: Outcome, n: u32) {
        let slot = match outcome {
            Outcome::Exited => &mut self.exited,
            Outcome::Errored => &mut self.errored,
            Outcome::Crashed => &mut self.crashed,
            Outcome::Abnormal => &mut self.abnormal,
        };
        *slot = slot.saturating_add(n);
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Bucket) {
        self.exited = self.exited.saturating_add(other.exited);
        self.errored = self.errored.saturating_add(other.errored);
        self.crashed = self.crashed.saturating_add(other.crashed);
        self.abnormal = self.abnormal.saturating_add(other.abnormal);
    }
}

/// The start of the minute `t` is in.
pub fn minute_of(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 60)
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// This host's `did` (see the module docs): from `/etc/machine-id`, else
/// `/var/lib/dbus/machine-id`, else (a container without either) from the
/// host name by the same derivation.
pub fn host_id() -> String {
    let machine = ["/etc/machine-id", "/var/lib/dbus/machine-id"].iter().find_map(|p| read_machine_id(Path::new(p)));
    match machine {
        Some(id) => app_specific(&id),
        None => {
            let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
            app_specific(host.as_bytes())
        }
    }
}

/// The 16 bytes of a machine-id file (32 hex digits).
fn read_machine_id(path: &Path) -> Option<[u8; 16]> {
    read_machine_id_text(&std::fs::read_to_string(path).ok()?)
}

fn read_machine_id_text(text: &str) -> Option<[u8; 16]> {
    let hex = text.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // An all-zero id is systemd's "not initialised yet".
    (id != [0; 16]).then_some(id)
}

/// systemd's `sd_id128_get_app_specific(base, APP_ID)`: the first 16 bytes
/// of HMAC-SHA256 keyed with `base` over the app id, made a v4 UUID.
fn app_specific(base: &[u8]) -> String {
    let app = uuid::Uuid::parse_str(APP_ID).expect("a valid constant");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, base);
    let tag = ring::hmac::sign(&key, app.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&tag.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn outcomes_follow_how_the_run_ended() {
        let signaled = |signal| ChildStatus::Signaled { signal, core_dumped: None };
        assert_eq!(Outcome::of(ChildStatus::Exited(0), None, false), Outcome::Exited);
        assert_eq!(Outcome::of(signaled(libc::SIGTERM), Some(Kind::Stopped), false), Outcome::Exited);
        assert_eq!(Outcome::of(ChildStatus::Exited(3), Some(Kind::Exit), false), Outcome::Errored);
        assert_eq!(Outcome::of(signaled(libc::SIGSEGV), Some(Kind::Signal), true), Outcome::Crashed);
        assert_eq!(Outcome::of(signaled(libc::SIGABRT), Some(Kind::Signal), false), Outcome::Crashed);
        assert_eq!(Outcome::of(signaled(libc::SIGKILL), Some(Kind::Oom), false), Outcome::Crashed);
        assert_eq!(Outcome::of(ChildStatus::Exited(101), Some(Kind::Panic), false), Outcome::Crashed);
        assert_eq!(Outcome::of(signaled(libc::SIGKILL), Some(Kind::Signal), false), Outcome::Abnormal);
        assert_eq!((Outcome::Errored.status(), Outcome::Errored.errors()), (Status::Exited, 1));
        assert_eq!((Outcome::Exited.status(), Outcome::Exited.errors()), (Status::Exited, 0));
    }

    #[test]
    fn updates_are_what_relay_reads() {
        let attrs = Attrs { release: "server@1.0".into(), environment: Some("prod".into()) };
        let mut session = Session::new(at(1_700_000_000), "host".into(), attrs);
        let start = session.start(at(1_700_000_000));
        let end = session.end(Outcome::Crashed, false, at(1_700_000_002), Duration::from_millis(1500));
        let json = serde_json::to_value(&end).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "sid": session.sid(), "did": "host", "seq": 1_700_000_002_000u64,
                "started": "2023-11-14T22:13:20Z", "timestamp": "2023-11-14T22:13:22Z",
                "duration": 1.5, "status": "crashed", "errors": 1,
                "attrs": {"release": "server@1.0", "environment": "prod"}
            })
        );
        let start = serde_json::to_value(&start).unwrap();
        assert_eq!((start["init"].as_bool(), start["status"].as_str()), (Some(true), Some("ok")));
        assert!(start.get("duration").is_none());
        // The same millisecond still orders the updates.
        let again = session.end(Outcome::Exited, true, at(1_700_000_002), Duration::ZERO);
        assert_eq!(again.seq, 1_700_000_002_001);
    }

    #[test]
    fn buckets_count_by_outcome_and_minute() {
        let mut bucket = Bucket { started: format_timestamp(minute_of(at(1_700_000_019))), ..Bucket::default() };
        bucket.add(Outcome::Crashed, 2);
        bucket.add(Outcome::Errored, 1);
        assert_eq!(
            serde_json::to_value(&bucket).unwrap(),
            serde_json::json!({"started": "2023-11-14T22:13:00Z", "errored": 1, "crashed": 2})
        );
    }

    /// The same derivation as systemd's: a vector `systemd-id128 machine-id
    /// -u --app-specific=APP_ID` printed on a host whose machine id was
    /// 3d1219c7c4c5404aaa1f6d2a48adfda4, and this host's own id checked
    /// against systemd-id128 (`.ci/test` installs systemd).
    #[test]
    fn the_host_id_is_systemds_app_specific_machine_id() {
        let machine = read_machine_id_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(app_specific(&machine), "c8d886ff-c3e9-4a45-b6e7-d036c38282cc");

        let id = host_id();
        let out = std::process::Command::new("systemd-id128")
            .args(["machine-id", "-u", &format!("--app-specific={APP_ID}")])
            .output()
            .expect("systemd-id128 is needed (.ci/test installs systemd)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
        let raw = std::fs::read_to_string("/etc/machine-id").unwrap();
        assert!(!id.replace('-', "").contains(raw.trim()), "the raw machine id must not leak");
    }
}
