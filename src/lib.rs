//! crashwatch: an out-of-process crash supervisor for Linux servers.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; the library
//! exists so that integration tests can drive stages (the outbox, the
//! tracer) directly. Data flows one way through the modules:
//!
//! ```text
//! cli/config ─► supervise ─► ptrace ─► capture ─► report ─► spool
//!                  └─► logs ──────────────────────┘            │
//!                                          sentry (event, envelope, outbox,
//!                                                  upload, flush) ◄┘
//! ```
//!
//! `commands` wires the stages into the subcommands. Only `sys` (raw
//! syscalls) may use `unsafe`.
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod errors;
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
