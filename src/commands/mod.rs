//! One module per subcommand. Each returns the process's exit code or a
//! [`Failure`] that says what went wrong and which code to exit with.

pub mod doctor;
pub mod list;
pub mod run;
pub mod show;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
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
    match cli.command {
        Command::Run(args) => run::run(args, cli.spool_dir),
        Command::List(args) => list::list(&spool(cli.spool_dir), &args),
        Command::Show(args) => show::show(&spool(cli.spool_dir), &args),
        Command::Doctor => doctor::doctor(&spool(cli.spool_dir)),
    }
}

fn spool(dir: Option<PathBuf>) -> Spool {
    Spool::at(dir.unwrap_or_else(Spool::default_root))
}
