//! `--config FILE`: settings from a TOML file, beneath the command line and
//! the environment.
//!
//! A setting is any long option of a subcommand, named without its dashes:
//!
//! ```toml
//! dsn = "https://key@sentry.example.com/42"
//! log-lines = 500
//! log-bytes = "1M"
//! restart = "on-failure"
//! follow-forks = true
//! scrub = ['token=(?P<secret>\w+)']
//! ```
//!
//! The file's settings become options placed before the command line's
//! own and parsed again by clap, so a value from the file is validated
//! exactly as the same option typed on the command line, and clap's order
//! of precedence (command line, then environment, then file) holds by
//! construction: an option already set on the command line or by its
//! environment variable is not taken from the file. Repeatable options
//! (`scrub`) add to those on the command line. One file serves every
//! subcommand: a setting that is an option of `run` but not of `send` is
//! skipped by `send`; a key that is an option of no subcommand is an error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The command line, with the settings of `--config FILE` (if given)
/// underneath; plus warnings to log once logging is set up. A usage error
/// (of the command line or of the file) is a clap error: `exit()` prints it
/// and exits 2.
pub fn parse(argv: Vec<OsString>) -> Result<(Cli, Vec<String>), clap::Error> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok((Cli::from_arg_matches(&matches)?, Vec::new()));
    };
    let (table, warnings) = load(&path)?;
    let extra = options_from(&table, &matches, &path)?;
    let argv = insert_after_subcommand(argv, extra);
    let matches = Cli::command().try_get_matches_from(&argv).map_err(|e| in_file(&path, &e))?;
    Ok((Cli::from_arg_matches(&matches)?, warnings))
}

fn usage_error(message: String) -> clap::Error {
    Cli::command().error(clap::error::ErrorKind::InvalidValue, message)
}

/// A clap error about an option that came from the file, said so.
fn in_file(path: &Path, e: &clap::Error) -> clap::Error {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    usage_error(format!("in the config file {}: {first}", path.display()))
}

fn load(path: &Path) -> Result<(toml::Table, Vec<String>), clap::Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage_error(format!("failed to read the config file {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        usage_error(format!("the config file {} is not valid TOML: {e}", path.display()))
    })?;
    let mut warnings = Vec::new();
    if table.contains_key("dsn") {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            warnings.push(format!(
                "the config file {} holds a DSN and every user can read it; `chmod 600` it (or 640 for a group)",
                path.display()
            ));
        }
    }
    Ok((table, warnings))
}

/// The options the file adds to the command line in `matches`.
fn options_from(table: &toml::Table, matches: &clap::ArgMatches, path: &Path) -> Result<Vec<OsString>, clap::Error> {
    let cli = Cli::command();
    let (name, sub_matches) = match matches.subcommand() {
        Some((name, sub)) => (name, sub),
        None => return Ok(Vec::new()),
    };
    let sub = cli.find_subcommand(name).expect("clap matched this subcommand");
    let mut extra = Vec::new();
    for (key, value) in table {
        let bad = |why: &str| usage_error(format!("in the config file {}: `{key}` {why}", path.display()));
        if key == "config" {
            return Err(bad("cannot name another config file"));
        }
        let long = |a: &&clap::Arg| a.get_long() == Some(key.as_str());
        // Global options (spool-dir) are the top command's; the rest the
        // subcommand's.
        let (arg, global) = match (cli.get_arguments().find(long), sub.get_arguments().find(long)) {
            (Some(arg), _) => (arg, true),
            (None, Some(arg)) => (arg, false),
            (None, None) => {
                let anywhere = cli.get_subcommands().any(|s| s.get_arguments().any(|a| long(&a)));
                if anywhere {
                    continue;
                }
                return Err(bad("is not a setting: settings are the long options of the subcommands, without `--`"));
            }
        };
        let by_user = |in_matches: &clap::ArgMatches, id: &clap::Id| {
            matches!(in_matches.value_source(id.as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
        };
        let appends = matches!(arg.get_action(), ArgAction::Append);
        if by_user(if global { matches } else { sub_matches }, arg.get_id()) && !appends {
            continue;
        }
        // An option the user's own options exclude (`follow-forks` in the
        // file, `--no-ptrace` typed) gives way to them, as a setting does.
        let excluded = !global
            && sub.get_arguments().any(|other| {
                by_user(sub_matches, other.get_id())
                    && (sub.get_arg_conflicts_with(other).iter().any(|c| c.get_id() == arg.get_id())
                        || sub.get_arg_conflicts_with(arg).iter().any(|c| c.get_id() == other.get_id()))
            });
        if excluded {
            continue;
        }
        let option = format!("--{key}");
        match (value, arg.get_action()) {
            (toml::Value::Boolean(set), ArgAction::SetTrue) => {
                if *set {
                    extra.push(option.into());
                }
            }
            (_, ArgAction::SetTrue) => return Err(bad("is a switch: use true or false")),
            (toml::Value::Array(items), ArgAction::Append) => {
                for item in items {
                    extra.push(
                        format!("{option}={}", scalar(item).ok_or_else(|| bad("must list strings or numbers"))?).into(),
                    );
                }
            }
            (toml::Value::Array(_), _) => return Err(bad("takes one value, not a list")),
            (value, _) => {
                let value = scalar(value).ok_or_else(|| bad("must be a string, a number or a boolean"))?;
                extra.push(format!("{option}={value}").into());
            }
        }
    }
    Ok(extra)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `argv` with `extra` right after the subcommand's name, so that they are
/// the subcommand's options and precede its own (and `run`'s `--`).
fn insert_after_subcommand(mut argv: Vec<OsString>, extra: Vec<OsString>) -> Vec<OsString> {
    // The top command's options that take a separate value.
    const WITH_VALUE: [&str; 2] = ["--spool-dir", "--config"];
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].to_string_lossy();
        if WITH_VALUE.contains(&arg.as_ref()) {
            i += 2;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    let at = (i + 1).min(argv.len());
    argv.splice(at..at, extra);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_file(toml: &str, argv: &[&str]) -> Result<(Cli, Vec<String>), clap::Error> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let mut full: Vec<OsString> = vec!["crashwatch".into(), "--config".into(), file.path().into()];
        full.extend(argv.iter().map(OsString::from));
        parse(full)
    }

    fn run_args(cli: Cli) -> crate::cli::RunArgs {
        match cli.command {
            crate::cli::Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn the_top_options_that_take_values_are_known() {
        let cli = Cli::command();
        let with_values: Vec<String> = cli
            .get_arguments()
            .filter(|a| {
                a.get_num_args().is_none_or(|n| n.takes_values())
                    && !matches!(a.get_action(), ArgAction::SetTrue | ArgAction::Help | ArgAction::Version)
            })
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        assert_eq!(with_values, ["--spool-dir", "--config"]);
    }

    #[test]
    fn file_settings_fill_what_the_command_line_leaves() {
        let toml = "log-lines = 7\nlog-bytes = \"2K\"\nfollow-forks = true\nrestart = \"on-failure\"\n\
                    max-restarts = 4\nscrub = ['a(?P<secret>b)']\nspool-dir = \"/tmp/x\"\n\
                    minidump-processing = \"server\"\n";
        let (cli, warnings) =
            with_file(toml, &["run", "--log-lines", "9", "--scrub", "z", "--", "prog", "--log-lines"]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(cli.spool_dir.as_deref(), Some(Path::new("/tmp/x")));
        let run = run_args(cli);
        assert_eq!(run.log_lines, 9, "the command line wins");
        assert_eq!(run.log_bytes, 2048);
        assert!(run.follow_forks);
        assert_eq!(run.restart, crate::restart::Policy::OnFailure);
        assert_eq!(run.max_restarts, Some(4));
        assert_eq!(run.scrub, ["a(?P<secret>b)", "z"], "lists add up");
        assert_eq!(run.minidump_processing, "server");
        assert_eq!(run.command, ["prog", "--log-lines"]);
    }

    #[test]
    fn a_file_option_gives_way_to_the_users_conflicting_one() {
        let (cli, _) = with_file("follow-forks = true\n", &["run", "--no-ptrace", "--", "prog"]).unwrap();
        let run = run_args(cli);
        assert!(run.no_ptrace && !run.follow_forks);
        let (cli, _) = with_file("no-ptrace = true\n", &["run", "--follow-forks", "--", "prog"]).unwrap();
        let run = run_args(cli);
        assert!(run.follow_forks && !run.no_ptrace);
    }

    #[test]
    fn settings_of_other_subcommands_are_skipped() {
        let (cli, _) = with_file("log-lines = 7\ndsn = \"\"\ntimeout = 5\n", &["send"]).unwrap();
        let crate::cli::Command::Send(send) = cli.command else { panic!("not send") };
        assert_eq!(send.timeout, 5);
    }

    #[test]
    fn mistakes_in_the_file_are_usage_errors_that_name_it() {
        let cases = [
            ("log-linez = 7", "`log-linez` is not a setting"),
            ("log-lines = \"many\"", "in the config file"),
            ("follow-forks = \"yes\"", "is a switch"),
            ("log-lines = [1, 2]", "takes one value"),
            ("config = \"other.toml\"", "cannot name another config file"),
            ("log-lines = ", "is not valid TOML"),
        ];
        for (toml, expected) in cases {
            let e = with_file(toml, &["run", "--", "prog"]).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let text = e.to_string();
            assert!(text.contains(expected), "{toml}: {text}");
        }
        let e =
            parse(["crashwatch", "--config", "/nonexistent.toml", "list"].map(OsString::from).to_vec()).unwrap_err();
        assert!(e.to_string().contains("failed to read the config file /nonexistent.toml"), "{e}");
    }

    #[test]
    fn options_go_right_after_the_subcommand() {
        let argv = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        let extra = argv(&["--x=1"]);
        assert_eq!(
            insert_after_subcommand(argv(&["cw", "--spool-dir", "run", "run", "--", "p"]), extra.clone()),
            argv(&["cw", "--spool-dir", "run", "run", "--x=1", "--", "p"])
        );
        assert_eq!(
            insert_after_subcommand(argv(&["cw", "--config=f", "list"]), extra.clone()),
            argv(&["cw", "--config=f", "list", "--x=1"])
        );
    }
}
