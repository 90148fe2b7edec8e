//! One module per subcommand. Each returns the process's exit code or a
//! [`Failure`] that says what went wrong and which code to exit with.

pub mod debug;
pub mod delivery;
pub mod doctor;
mod doctor_spool;
pub mod dump;
pub mod filing;
pub mod generate;
pub mod hang;
pub mod health;
pub mod list;
pub mod live;
pub mod oom_snapshot;
pub mod ran;
pub mod recover;
pub mod run;
pub mod runtime_file;
pub mod send;
pub mod show;
mod summary;
pub mod symbolicate;
pub mod test_event;
pub mod watch;

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::exit;
use crate::sentry::Dsn;
use crate::spool::Spool;

/// An error that ends crashwatch, with the exit code it ends with.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: i32, error: impl Into<anyhow::Error>) -> Failure {
        Failure { code, error: error.into() }
    }
}

/// Runs the command line's subcommand.
pub fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let dir = cli.spool_dir;
    match cli.command {
        Command::Run(args) => run::run(*args, dir),
        Command::List(args) => list::list(&spool(dir)?, &args),
        Command::Show(args) => show::show(&spool(dir)?, &args),
        Command::Doctor(args) => doctor::doctor(&dir.unwrap_or_else(Spool::default_root), &args),
        Command::Send(args) => send::send(&spool(dir)?, &args),
        Command::Test(args) => test_event::test(&args),
        Command::Symbolicate(args) => symbolicate::run(|| spool(dir), &args),
        Command::Debug(args) => debug::debug(&spool(dir)?, &args),
        Command::Dump(args) => dump::dump(&spool(dir)?, &args),
        Command::Generate(args) => generate::generate(&args),
    }
}

/// Parses a DSN given on the command line or in SENTRY_DSN: a bad one is a
/// usage error (exit 2) that says what is wrong with it, before anything runs.
pub fn parse_dsn(dsn: Option<&str>) -> Result<Option<Dsn>, Failure> {
    match dsn.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse::<Dsn>()
            .map(Some)
            .map_err(|e| Failure::new(2, anyhow::Error::new(e).context("the DSN (--dsn or SENTRY_DSN) is not valid"))),
    }
}

/// Writes what a command prints to stdout. A reader that went away
/// (`crashwatch list | head -1`: EPIPE) is not an error; any other failure
/// (a full disk, a closed descriptor) is, so that a script does not take a
/// truncated output for a whole one.
pub fn write_stdout(bytes: &[u8]) -> Result<i32, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::SUCCESS),
        Err(e) => Err(Failure::new(exit::FAILURE, anyhow::Error::new(e).context("failed to write to stdout"))),
    }
}

/// The spool for a command other than `run`: checked, and created only by
/// what needs to write (nothing is created to read).
fn spool(dir: Option<PathBuf>) -> Result<Spool, Failure> {
    Spool::open(dir.unwrap_or_else(Spool::default_root)).map_err(|e| Failure::new(crate::exit::FAILURE, e))
}

/// Finishes the reports a killed crashwatch left, without a DSN (they are
/// queued by the next `send` or `run`): what `list` and `show` do first.
fn finish_left_over(spool: &Spool, command: &str) {
    let by = format!("`crashwatch {command}` (pid {})", std::process::id());
    match recover::recover(spool, None, &by) {
        Ok(done) => recover::log(&done),
        Err(e) => tracing::warn!("failed to finish the reports left unfinished: {}", crate::errors::Chain(&e)),
    }
}
