//! The systemd watchdog, seen from the middle: crashwatch proxies the
//! child's `NOTIFY_SOCKET`.
//!
//! Under systemd (`Type=notify`, `WatchdogSec=`), crashwatch is the unit's
//! main process, so systemd hears only from crashwatch (`NotifyAccess=main`
//! drops messages from any other pid). crashwatch therefore:
//!
//! 1. binds a unix datagram socket of its own, `notify` in a directory only
//!    its user can enter (under `$RUNTIME_DIRECTORY`, `$XDG_RUNTIME_DIR` or
//!    the temporary directory), and gives the child `NOTIFY_SOCKET` naming
//!    it; `WATCHDOG_USEC` passes unchanged, `WATCHDOG_PID` is removed
//!    (systemd set it to crashwatch's pid: the child's `sd_watchdog_enabled`
//!    would say the watchdog is not for it; without it, it is);
//! 2. forwards every datagram it receives to the real `NOTIFY_SOCKET`, from
//!    its own pid (the kernel adds the sender's credentials), with the
//!    descriptors it carried (`FDSTORE=1` works). `READY=1`, `STATUS=`,
//!    `RELOADING=1`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`, `WATCHDOG=1`…
//!    pass as they are. Lines `MAINPID=` are dropped: the main process must
//!    stay crashwatch, which forwards signals and outlives restarts (and a
//!    child named main process would have its own messages, now sent by
//!    crashwatch, refused under `NotifyAccess=main`);
//! 3. watches the pings: from the child's `READY=1` or first `WATCHDOG=1`
//!    in a run, a hang is [`CAPTURE_AT`] of `WatchdogSec` without a
//!    `WATCHDOG=1`. sd_notify(3) advises pinging every half interval, so a
//!    program that follows it has missed at least one ping by then, and
//!    crashwatch has a quarter of the interval left to dump it before
//!    systemd's own timeout sends SIGABRT (to crashwatch, which forwards
//!    it). `WATCHDOG=trigger` (the program says it is hung) is a hang at
//!    once; `WATCHDOG_USEC=` from the child changes the interval, as it
//!    does for systemd;
//! 4. when crashwatch ends a hung child to restart it (`--restart on-hang`,
//!    `on-failure`, `always`), it has taken the hang in hand: it pings
//!    systemd itself ([`Cover`], every half interval) until the new child's
//!    `READY=1` or first ping, for a bounded time, so that systemd's
//!    timeout does not abort the restart it is waiting for.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{Check, Detected, OnHang};
use crate::sys::notify::{self, Address};

/// The share of `WatchdogSec` without a ping that is a hang: 3/4.
pub const CAPTURE_AT: (u32, u32) = (3, 4);

/// systemd's bound on a notification (PIPE_BUF); a longer one is dropped.
const MAX_MESSAGE: usize = 4096;

/// What systemd told crashwatch in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systemd {
    /// `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    pub notify_socket: OsString,
    /// `WATCHDOG_USEC`, when the watchdog is crashwatch's (no
    /// `WATCHDOG_PID`, or crashwatch's own pid).
    pub watchdog: Option<Duration>,
}

impl Systemd {
    /// From `env` (crashwatch's environment); `None` without a usable
    /// `NOTIFY_SOCKET` (unset, or a form crashwatch cannot forward to, such
    /// as `vsock:`, with a warning).
    pub fn from_env(env: &[(OsString, OsString)]) -> Option<Systemd> {
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str());
        let socket = var("NOTIFY_SOCKET").filter(|s| !s.is_empty())?;
        let first = socket.as_bytes()[0];
        if first != b'/' && first != b'@' {
            tracing::warn!(
                "NOTIFY_SOCKET={} is not a socket path or @abstract name; it is passed to the child as it is, \
                 and crashwatch does not watch the systemd watchdog",
                socket.to_string_lossy()
            );
            return None;
        }
        let ours = var("WATCHDOG_PID").is_none_or(|pid| pid.as_bytes() == std::process::id().to_string().as_bytes());
        let usec = var("WATCHDOG_USEC").and_then(|v| v.to_str()?.parse::<u64>().ok()).filter(|u| *u > 0);
        Some(Systemd { notify_socket: socket.to_owned(), watchdog: usec.filter(|_| ours).map(Duration::from_micros) })
    }
}

/// The pings seen, shared by the proxy thread and the run's watch.
#[derive(Debug)]
struct Pings {
    interval: Option<Duration>,
    /// The last `READY=1` or `WATCHDOG=1` of this run: when it came.
    last: Option<(Instant, SystemTime)>,
    pings: u64,
    /// `WATCHDOG=trigger` came.
    triggered: bool,
    /// This silence was handed on already.
    fired: bool,
    /// crashwatch pings for the child until this instant (see [`Cover`]).
    cover_until: Option<Instant>,
}

/// The proxy: the socket the child is given and the thread that forwards.
/// One for the whole of crashwatch's life (systemd's watchdog spans the
/// restarts); the socket's directory goes when it is dropped.
pub struct Proxy {
    dir: tempfile::TempDir,
    pings: Arc<Mutex<Pings>>,
    target: OsString,
}

impl Proxy {
    /// Binds crashwatch's socket and starts forwarding to `systemd`'s.
    pub fn start(systemd: &Systemd) -> std::io::Result<Proxy> {
        let base = std::env::var_os("RUNTIME_DIRECTORY")
            .and_then(|d| d.as_bytes().split(|b| *b == b':').next().map(|d| PathBuf::from(OsStr::from_bytes(d))))
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new().prefix("crashwatch-notify-").tempdir_in(&base)?;
        let ours = UnixDatagram::bind(dir.path().join("notify"))?;
        let out = UnixDatagram::unbound()?;
        let pings = Arc::new(Mutex::new(Pings {
            interval: systemd.watchdog,
            last: None,
            pings: 0,
            triggered: false,
            fired: false,
            cover_until: None,
        }));
        let target = systemd.notify_socket.clone();
        let shared = Arc::clone(&pings);
        std::thread::Builder::new()
            .name("notify-proxy".into())
            .spawn(move || forward(&ours, &out, &target, &shared))?;
        tracing::debug!(socket = %dir.path().display(), watchdog = ?systemd.watchdog, "proxying NOTIFY_SOCKET");
        Ok(Proxy { dir, pings, target: systemd.notify_socket.clone() })
    }

    /// The handle that pings systemd in the child's stead.
    pub fn cover(&self) -> Cover {
        Cover { pings: Arc::clone(&self.pings), target: self.target.clone() }
    }

    /// The child's environment: `env` with `NOTIFY_SOCKET` naming the
    /// proxy and without `WATCHDOG_PID`.
    pub fn child_env(&self, env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
        let mut out: Vec<_> =
            env.iter().filter(|(k, _)| k != "NOTIFY_SOCKET" && k != "WATCHDOG_PID").cloned().collect();
        out.push(("NOTIFY_SOCKET".into(), self.dir.path().join("notify").into_os_string()));
        out
    }

    /// A new run is about to start: the pings of the last one are
    /// forgotten (called before the child exists, so that none of its own
    /// is).
    pub fn new_run(&self) {
        let mut pings = self.pings.lock().unwrap_or_else(PoisonError::into_inner);
        pings.last = None;
        pings.pings = 0;
        pings.triggered = false;
        pings.fired = false;
    }

    /// Watches the pings of the run until the returned value is dropped;
    /// `on_hang` gets each silence once.
    pub fn watch(&self, on_hang: OnHang) -> std::io::Result<Watching> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let pings = Arc::clone(&self.pings);
        std::thread::Builder::new().name("watchdog".into()).spawn(move || {
            loop {
                let tick = {
                    let mut state = pings.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(detected) = silence(&mut state, Instant::now(), SystemTime::now()) {
                        drop(state);
                        tracing::warn!("{}", detected.headline());
                        on_hang(detected);
                        continue;
                    }
                    state.interval.map_or(Duration::from_secs(1), |i| (i / 20).clamp(ms(10), ms(500)))
                };
                if !matches!(stopped.recv_timeout(tick), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    return;
                }
            }
        })?;
        Ok(Watching { _stop: stop })
    }
}

/// Pings systemd's watchdog in the child's stead while crashwatch restarts
/// a hung child.
#[derive(Clone)]
pub struct Cover {
    pings: Arc<Mutex<Pings>>,
    target: OsString,
}

impl Cover {
    /// Pings every half interval from now until the next child's `READY=1`
    /// or first ping, or `limit` at most.
    pub fn start(&self, limit: Duration) {
        let Some(interval) = self.pings.lock().unwrap_or_else(PoisonError::into_inner).interval else { return };
        self.pings.lock().unwrap_or_else(PoisonError::into_inner).cover_until = Some(Instant::now() + limit);
        let (pings, target) = (Arc::clone(&self.pings), self.target.clone());
        let pinging = std::thread::Builder::new().name("watchdog-cover".into()).spawn(move || {
            let Ok(out) = UnixDatagram::unbound() else { return };
            let to = address(target.as_bytes());
            loop {
                let until = pings.lock().unwrap_or_else(PoisonError::into_inner).cover_until;
                if until.is_none_or(|u| Instant::now() >= u) {
                    return;
                }
                if let Err(e) = notify::send_with_fds(out.as_fd(), &to, b"WATCHDOG=1", &[]) {
                    tracing::warn!("failed to ping the systemd watchdog while the program restarts: {e}");
                }
                std::thread::sleep(interval / 2);
            }
        });
        if let Err(e) = pinging {
            tracing::warn!("failed to start pinging the systemd watchdog while the program restarts: {e}");
        }
    }
}

fn address(target: &[u8]) -> Address<'_> {
    match target.strip_prefix(b"@") {
        Some(name) => Address::Abstract(name),
        None => Address::Path(std::path::Path::new(OsStr::from_bytes(target))),
    }
}

/// A run's watch; it ends when this is dropped.
pub struct Watching {
    _stop: std::sync::mpsc::Sender<()>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether the pings have stopped for long enough (once per silence).
fn silence(state: &mut Pings, now: Instant, wall: SystemTime) -> Option<Detected> {
    let (interval, (last, last_wall)) = (state.interval?, state.last?);
    if state.fired {
        return None;
    }
    let limit = interval * CAPTURE_AT.0 / CAPTURE_AT.1;
    if !state.triggered && now.duration_since(last) < limit {
        return None;
    }
    state.fired = true;
    let since = wall.checked_sub(now.duration_since(last)).unwrap_or(last_wall);
    Some(Detected { check: Check::Watchdog { interval, pings: state.pings }, since, at: wall })
}

/// What one message says, for the watch, and what of it goes on to systemd:
/// the message as it came, less its `MAINPID=` lines.
fn observe(message: &[u8], state: &mut Pings, now: Instant, wall: SystemTime) -> Vec<u8> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dropped = false;
    for line in message.split(|b| *b == b'\n') {
        match line {
            b"WATCHDOG=1" => {
                state.cover_until = None;
                state.pings += 1;
                state.last = Some((now, wall));
                if state.fired {
                    tracing::info!("the child pings the systemd watchdog again");
                }
                state.fired = false;
                state.triggered = false;
            }
            b"READY=1" if state.last.is_none() => {
                state.cover_until = None;
                state.last = Some((now, wall));
            }
            b"WATCHDOG=trigger" => state.triggered = true,
            _ => {}
        }
        if let Some(usec) = line.strip_prefix(b"WATCHDOG_USEC=") {
            let usec = std::str::from_utf8(usec).ok().and_then(|u| u.parse::<u64>().ok());
            state.interval = usec.filter(|u| *u > 0).map(Duration::from_micros);
        }
        if line.starts_with(b"MAINPID=") {
            tracing::debug!("dropped MAINPID= from the child's notification: crashwatch stays the main process");
            dropped = true;
        } else {
            kept.push(line);
        }
    }
    if !dropped {
        return message.to_vec();
    }
    let kept: Vec<&[u8]> = kept.into_iter().filter(|l| !l.is_empty()).collect();
    kept.join(&b'\n')
}

/// The proxy thread: every datagram on `ours` goes on to `target`.
fn forward(ours: &UnixDatagram, out: &UnixDatagram, target: &OsStr, pings: &Mutex<Pings>) {
    let target = target.as_bytes();
    let to = address(target);
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut warned = false;
    loop {
        let received = match notify::recv_with_fds(ours.as_fd(), &mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("the NOTIFY_SOCKET proxy failed to receive: {e}; the child's notifications are lost");
                return;
            }
        };
        if received.truncated || received.len > MAX_MESSAGE {
            tracing::warn!("dropped a notification of the child longer than {MAX_MESSAGE} bytes (systemd's limit)");
            continue;
        }
        let message = {
            let mut state = pings.lock().unwrap_or_else(PoisonError::into_inner);
            observe(&buf[..received.len], &mut state, Instant::now(), SystemTime::now())
        };
        if message.is_empty() && received.fds.is_empty() {
            continue;
        }
        match notify::send_with_fds(out.as_fd(), &to, &message, &received.fds) {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(
                    "failed to pass the child's notification on to systemd ({}): {e}",
                    String::from_utf8_lossy(target)
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pings(interval: u64) -> Pings {
        Pings {
            interval: Some(Duration::from_secs(interval)),
            last: None,
            pings: 0,
            triggered: false,
            fired: false,
            cover_until: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn the_watchdog_is_ours_unless_another_pid_has_it() {
        let me = std::process::id().to_string();
        let s = Systemd::from_env(&env(&[("NOTIFY_SOCKET", "/run/n"), ("WATCHDOG_USEC", "2000000")])).unwrap();
        assert_eq!(s.watchdog, Some(Duration::from_secs(2)));
        let s = Systemd::from_env(&env(&[("NOTIFY_SOCKET", "@n"), ("WATCHDOG_USEC", "5"), ("WATCHDOG_PID", &me)]));
        assert_eq!(s.unwrap().watchdog, Some(Duration::from_micros(5)));
        let s = Systemd::from_env(&env(&[("NOTIFY_SOCKET", "/n"), ("WATCHDOG_USEC", "5"), ("WATCHDOG_PID", "1")]));
        assert_eq!(s.unwrap().watchdog, None);
        assert_eq!(Systemd::from_env(&env(&[("NOTIFY_SOCKET", "vsock:2:1")])), None);
        assert_eq!(Systemd::from_env(&env(&[("WATCHDOG_USEC", "5")])), None);
    }

    #[test]
    fn mainpid_is_dropped_and_the_rest_passes() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut state = pings(10);
        let out = observe(b"READY=1\nMAINPID=42\nSTATUS=up", &mut state, now, wall);
        assert_eq!(out, b"READY=1\nSTATUS=up");
        assert_eq!(observe(b"STATUS=a\n", &mut state, now, wall), b"STATUS=a\n");
        assert_eq!(state.last.map(|l| l.0), Some(now));
        assert!(observe(b"MAINPID=42", &mut state, now, wall).is_empty());
        observe(b"WATCHDOG_USEC=4000000", &mut state, now, wall);
        assert_eq!(state.interval, Some(Duration::from_secs(4)));
    }

    #[test]
    fn three_quarters_of_the_interval_without_a_ping_is_one_hang() {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let mut state = pings(8);
        // Not armed before READY=1 or a first ping.
        assert!(silence(&mut state, t0 + Duration::from_secs(60), wall).is_none());
        observe(b"WATCHDOG=1", &mut state, t0, wall);
        assert!(silence(&mut state, t0 + Duration::from_millis(5999), wall).is_none());
        let hang = silence(&mut state, t0 + Duration::from_secs(6), wall + Duration::from_secs(6)).unwrap();
        assert_eq!(hang.hung_for(), Duration::from_secs(6));
        assert_eq!(hang.check, Check::Watchdog { interval: Duration::from_secs(8), pings: 1 });
        assert!(silence(&mut state, t0 + Duration::from_secs(7), wall).is_none());
        // A ping ends the hang; the next silence is another.
        let t1 = t0 + Duration::from_secs(9);
        observe(b"WATCHDOG=1", &mut state, t1, wall);
        assert!(silence(&mut state, t1 + Duration::from_secs(1), wall).is_none());
        assert!(silence(&mut state, t1 + Duration::from_secs(6), wall).is_some());
    }

    #[test]
    fn watchdog_trigger_is_a_hang_at_once() {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let mut state = pings(8);
        observe(b"READY=1", &mut state, t0, wall);
        observe(b"WATCHDOG=trigger", &mut state, t0, wall);
        assert!(silence(&mut state, t0, wall).is_some());
    }
}
