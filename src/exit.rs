//! crashwatch's own exit codes. `crashwatch run` otherwise exits with its
//! child's status: the child's code, or 128+N when signal N killed it, as a
//! shell reports it (see [`crate::process::ChildStatus::exit_code`]).

/// A subcommand other than `run` did what it was asked.
pub const SUCCESS: i32 = 0;
/// A subcommand other than `run` failed (no report with that id, a spool
/// that cannot be read, a Relay that refused the test event…).
pub const FAILURE: i32 = 1;
/// The command line or the `--config` file is wrong (clap's code).
pub const USAGE: i32 = 2;
/// `crashwatch send`: some reports are still waiting in the outbox (Relay
/// unreachable or slow, a rate limit, a retry backoff); a later send or
/// the watcher delivers them. The same code as [`FAILURE`].
pub const REPORTS_WAITING: i32 = 1;
/// `crashwatch send`: this send set reports aside for good in the outbox's
/// `rejected/` (Relay refused them, or their file was corrupt); a person
/// should look. Wins over [`REPORTS_WAITING`].
pub const REPORTS_REJECTED: i32 = 3;
/// crashwatch itself failed before the child ran (as `env` and `nohup`).
pub const CANNOT_SUPERVISE: i32 = 125;
/// The program exists but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;
/// Added to the number of the signal that killed the child.
pub const SIGNAL_BASE: i32 = 128;
