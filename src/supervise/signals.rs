//! The signals crashwatch receives, collected as tini collects them: every
//! signal it forwards (see [`signals::is_forwarded`]), and SIGCHLD when it
//! reaps orphans, is blocked in all its threads and taken by one thread in
//! `sigwaitinfo`, which hands each to the subscribers of the [`Hub`]. No
//! handler ever runs. Why blocked rather than caught:
//! - a real-time signal is queued once per send, and each is taken and
//!   forwarded; a handler that sets a flag would merge them;
//! - a fault signal (SIGSEGV, SIGBUS…) sent by another process waits to be
//!   forwarded like any other, while a fault of crashwatch's own is
//!   delivered by the kernel to the faulting thread whatever its mask, and
//!   kills crashwatch as it always would (Rust's stack-overflow message is
//!   then lost: the kernel bypasses its handler);
//! - SIGTSTP and SIGCONT are forwarded, and crashwatch itself never stops
//!   (SIGTTIN and SIGTTOU, from crashwatch's own use of a terminal it no
//!   longer holds the foreground of, are ignored, as tini does);
//! - as PID 1, the kernel discards a signal whose action is the default,
//!   but never a blocked one.
//!
//! [`take_over`] must run before crashwatch starts any thread: a thread
//! started earlier would not block the signals and would take them with
//! their default action. The child gets the mask and dispositions
//! crashwatch inherited back before exec (`sys::signals`).

use std::io;
use std::sync::{Mutex, OnceLock};

use crate::process::signals;
use crate::sys::signals::{self as sys, SignalSet};

/// A subscriber: called on the collecting thread with each signal; returns
/// false once it is gone (its channel closed).
pub type Sink = Box<dyn FnMut(i32) -> bool + Send>;

/// The one collector of crashwatch's signals and who they go to.
pub struct Hub {
    state: Mutex<State>,
}

struct State {
    sinks: Vec<(u64, Sink)>,
    next_id: u64,
    /// Signals that arrived before the first child's supervisor
    /// subscribed (`forward_to`), which takes them: a `docker stop` during
    /// crashwatch's start reaches the child once it runs. `None` after.
    startup: Option<Vec<i32>>,
}

/// A subscription to the [`Hub`]; dropping it ends the deliveries.
pub struct Subscription {
    hub: &'static Hub,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().sinks.retain(|(id, _)| *id != self.id);
    }
}

static HUB: OnceLock<Hub> = OnceLock::new();

/// Blocks the signals crashwatch collects in the calling thread, ignores
/// SIGTTIN and SIGTTOU, and starts the collecting thread. Call it before
/// starting any other thread; `reap_orphans` adds SIGCHLD. A second call
/// returns the hub of the first.
pub fn take_over(reap_orphans: bool) -> io::Result<&'static Hub> {
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task")
        && tasks.count() > 1
    {
        // A bug of crashwatch's, not the user's: said so that tests see it.
        tracing::warn!("signals taken over after another thread started: that thread may take one as its default");
    }
    let mut set = SignalSet::of(signals::forwarded());
    if reap_orphans {
        set = set.with(libc::SIGCHLD);
    }
    sys::block(set)?;
    sys::ignore(libc::SIGTTIN)?;
    sys::ignore(libc::SIGTTOU)?;
    let hub = HUB
        .get_or_init(|| Hub { state: Mutex::new(State { sinks: Vec::new(), next_id: 0, startup: Some(Vec::new()) }) });
    std::thread::Builder::new().name("signals".into()).spawn(move || collect(hub, set))?;
    Ok(hub)
}

/// The collecting thread: one signal at a time, to every subscriber.
fn collect(hub: &'static Hub, set: SignalSet) {
    loop {
        let received = match sys::wait(set) {
            Ok(received) => received,
            Err(e) => {
                // Only an invalid set fails; nothing would be collected.
                tracing::error!("failed to wait for signals, none will be forwarded: {e}");
                return;
            }
        };
        let signal = received.signal;
        tracing::debug!(signal = %signals::name(signal), code = received.code, sender = ?received.sender, "received");
        let mut state = hub.lock();
        state.sinks.retain_mut(|(_, sink)| sink(signal));
        if let Some(startup) = state.startup.as_mut()
            && signal != libc::SIGCHLD
        {
            startup.push(signal);
        }
    }
}

impl Hub {
    /// Every signal from now on goes to `sink`; so do those that arrived
    /// before the first call of this, which takes them (the supervisor of
    /// a child forwards them once it has started).
    pub fn forward_to(&'static self, mut sink: Sink) -> Subscription {
        let mut state = self.lock();
        for signal in state.startup.take().unwrap_or_default() {
            sink(signal);
        }
        self.add(state, sink)
    }

    /// Every signal from now on goes to `sink` as well.
    pub fn listen(&'static self, sink: Sink) -> Subscription {
        let state = self.lock();
        self.add(state, sink)
    }

    fn add(&'static self, mut state: std::sync::MutexGuard<'_, State>, sink: Sink) -> Subscription {
        let id = state.next_id;
        state.next_id += 1;
        state.sinks.push((id, sink));
        Subscription { hub: self, id }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A sink only sends on a channel; a poisoned lock still holds
        // a consistent list.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
