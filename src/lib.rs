//! crashwatch: an out-of-process crash supervisor for Linux servers.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; the library
//! exists so that integration tests can drive stages directly. What happens,
//! in order, and the module that does it:
//!
//! ```text
//!  cli, config ─► commands::run: one loop over the child's events, per run;
//!                 restart decides whether there is another run
//!    supervise    fork, hold, exec the child; forward signals; reap
//!    ptrace       the tracer thread's decision at every stop
//!    capture      stop every thread, minidump, release to die (or run on)
//!    memory       cgroup, usage samples, OOM verdict, --oom-snapshot trigger
//!    logs         pumps, pass-through, the ring of last lines, the tap
//!    live         problems the program survives, found in its output
//!    hang         a program that runs but does not work: health URL, watchdog
//!    report       CrashReport: the seam, stored as JSON in the spool
//!    story        the runtime's own crash story, parsed from the log tail
//!    symbolicate  minidump → frames (run in a helper process)
//!    spool        the report store on disk
//!    sentry       event, envelope, outbox, upload, rate limits, throttle
//!    metrics      Prometheus counters
//! ```
//!
//! Below every stage are leaves any of them may use: `process` (exit
//! statuses, signals, siginfo, `/proc`), `sys` (raw syscalls, the only
//! module allowed `unsafe`), `exit` (crashwatch's own exit codes) and
//! `errors`. `tests/architecture.rs` holds the allow-list of imports.
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod errors;
pub mod exit;
pub mod hang;
pub mod live;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod ptrace;
pub mod report;
pub mod restart;
pub mod sentry;
pub mod spool;
pub mod story;
pub mod supervise;
pub mod symbolicate;
pub mod sys;
