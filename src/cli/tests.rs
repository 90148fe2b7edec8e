use super::*;
use clap::CommandFactory;

#[test]
fn percentages_parse() {
    assert_eq!(parse_percent("50"), Ok(50));
    assert_eq!(parse_percent("80%"), Ok(80));
    assert_eq!(parse_percent(" 1 "), Ok(1));
    assert_eq!(parse_percent("99"), Ok(99));
    for out_of_range in ["0", "100", "150", "99999999999999999999999"] {
        let err = parse_percent(out_of_range).unwrap_err();
        assert!(err.contains("out of range") && err.contains("1 to 99"), "{err}");
    }
    for not_a_number in ["abc", "", "%", "-5", "50.5", "5 0"] {
        let err = parse_percent(not_a_number).unwrap_err();
        assert!(err.contains("not a percentage"), "{not_a_number}: {err}");
    }
}

#[test]
fn oom_snapshot_needs_tracing() {
    let parsed = Cli::try_parse_from(["crashwatch", "run", "--oom-snapshot", "50", "--no-ptrace", "--", "x"]);
    let err = parsed.unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert_eq!(parse_bytes("256K"), Ok(256 << 10));
    assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
    assert_eq!(parse_bytes("2g"), Ok(2 << 30));
    assert!(parse_bytes("1T").is_err());
    assert!(parse_bytes("lots").is_err());
    assert!(parse_bytes("99999999999999999999G").is_err());
}

#[test]
fn minutes_parse() {
    assert_eq!(parse_minutes("5"), Ok(5));
    assert_eq!(parse_minutes("2h"), Ok(120));
    assert_eq!(parse_minutes("90m"), Ok(90));
    assert!(parse_minutes("90s").unwrap_err().contains("whole number"));
    assert!(parse_minutes("0").unwrap_err().contains("at least"));
    assert!(parse_minutes("soon").is_err());
}

#[test]
fn monitor_options_need_a_monitor_and_a_schedule() {
    let parsed = Cli::try_parse_from(["crashwatch", "run", "--monitor-schedule", "1h", "--", "x"]);
    assert_eq!(parsed.unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let parsed =
        Cli::try_parse_from(["crashwatch", "run", "--monitor", "job", "--monitor-max-runtime", "5", "--", "x"]);
    assert_eq!(parsed.unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn shares_parse() {
    assert_eq!(parse_share("10%"), Ok(Share::Percent(10)));
    assert_eq!(parse_share("2G"), Ok(Share::Bytes(2 << 30)));
    assert!(parse_share("101%").unwrap_err().contains("not a percentage"));
    assert!(parse_share("lots").is_err());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn program_arguments_are_taken_verbatim() {
    let cli = Cli::try_parse_from(["crashwatch", "run", "--pty", "--", "prog", "--pty", "-x"]).unwrap();
    let Command::Run(run) = cli.command else { panic!("not run") };
    assert!(run.pty);
    assert_eq!(run.command, ["prog", "--pty", "-x"]);
    // Without `--`, from the program on everything is the program's.
    let cli = Cli::try_parse_from(["crashwatch", "run", "--pty", "ls", "-la", "--pty"]).unwrap();
    let Command::Run(run) = cli.command else { panic!("not run") };
    assert_eq!(run.command, ["ls", "-la", "--pty"]);
    // A program whose name starts with a dash needs `--`.
    let cli = Cli::try_parse_from(["crashwatch", "run", "--", "-weird", "--x"]).unwrap();
    let Command::Run(run) = cli.command else { panic!("not run") };
    assert_eq!(run.command, ["-weird", "--x"]);
}

#[test]
fn a_mistyped_option_before_the_program_is_a_usage_error() {
    let err = Cli::try_parse_from(["crashwatch", "run", "--signal-grup", "prog"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(text.contains("a similar argument exists: '--signal-group'"), "{text}");
    let err = Cli::try_parse_from(["crashwatch", "run", "-x", "prog"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
}
