//! tini's signal tests (krallin/tini `test/`), ported: every signal a
//! container's PID 1 is sent, job control through it, and the signal state
//! the program inherits, on crashwatch and on tini side by side, as PID 1
//! of a PID namespace and as a subreaper.

mod common;
#[path = "supervisors/mod.rs"]
mod supervisors;

use common::fixture;
use supervisors::{BOTH, Place, Setup, Who, kill, shared_pending, state, status_code, wait_until};

/// What crashwatch forwards, tini too, but the fault signals.
fn forwarded() -> Vec<i32> {
    let not = [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU];
    (1..=libc::SIGRTMAX()).filter(|s| !not.contains(s) && (*s < 32 || *s >= libc::SIGRTMIN())).collect()
}

const FAULTS: [i32; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT, libc::SIGSYS, libc::SIGTRAP];

/// tini's signals test, for every signal: the program exits 100+N on
/// signal N, so the supervisor's exit code says which signal reached it.
fn every_signal_reaches_the_program(setup: Setup) {
    let spool = tempfile::tempdir().unwrap();
    let sigexit = fixture("sigexit");
    let sigexit = sigexit.to_str().unwrap();
    let signals: Vec<i32> = match setup.who {
        Who::Crashwatch => forwarded(),
        // tini leaves the fault signals to their default action.
        Who::Tini => forwarded().into_iter().filter(|s| !FAULTS.contains(s)).collect(),
    };
    for signal in signals {
        let running = setup.start(spool.path(), &[sigexit]);
        running.signal(signal);
        let (out, _) = running.finish();
        assert_eq!(status_code(&out), 100 + signal, "{setup:?}, signal {signal}: {}", stderr(&out));
    }
}

#[test]
fn every_forwardable_signal_reaches_the_program_through_crashwatch() {
    for place in [Place::Pid1, Place::Subreaper, Place::Plain] {
        every_signal_reaches_the_program(Setup::new((Who::Crashwatch, place)));
    }
}

#[test]
fn every_forwardable_signal_reaches_the_program_through_tini() {
    for place in [Place::Pid1, Place::Subreaper] {
        every_signal_reaches_the_program(Setup::new((Who::Tini, place)));
    }
}

#[test]
fn sigchld_sigttin_and_sigttou_are_not_forwarded() {
    // Each is sent before SIGURG: had it been forwarded, the program would
    // have taken it first (a lower number is delivered first) and exited
    // 100+N; it exits 100+SIGURG, and the supervisor is not stopped.
    let spool = tempfile::tempdir().unwrap();
    let sigexit = fixture("sigexit");
    for setup in BOTH.map(Setup::new) {
        for signal in [libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU] {
            let running = setup.start(spool.path(), &[sigexit.to_str().unwrap()]);
            running.signal(signal);
            running.signal(libc::SIGURG);
            let (out, _) = running.finish();
            assert_eq!(status_code(&out), 100 + libc::SIGURG, "{setup:?}, signal {signal}: {}", stderr(&out));
        }
    }
}

#[test]
fn fault_signals_sent_from_outside_are_forwarded_unlike_tini() {
    // A SIGSEGV another process sends says nothing about crashwatch: it is
    // passed on (the program has a handler and exits 111). tini does not
    // forward the fault signals: as PID 1 the kernel drops them (tini runs
    // on and forwards the SIGTERM that follows); elsewhere tini dies of it
    // and leaves its program behind.
    let spool = tempfile::tempdir().unwrap();
    let sigexit = fixture("sigexit");
    let sigexit = sigexit.to_str().unwrap();
    for place in [Place::Pid1, Place::Subreaper, Place::Plain] {
        let setup = Setup::new((Who::Crashwatch, place));
        for signal in FAULTS {
            let running = setup.start(spool.path(), &[sigexit]);
            running.signal(signal);
            let (out, _) = running.finish();
            assert_eq!(status_code(&out), 100 + signal, "{setup:?}, signal {signal}: {}", stderr(&out));
        }
    }

    let running = Setup::new((Who::Tini, Place::Pid1)).start(spool.path(), &[sigexit]);
    running.signal(libc::SIGSEGV);
    running.signal(libc::SIGTERM);
    let (out, _) = running.finish();
    assert_eq!(status_code(&out), 100 + libc::SIGTERM, "{}", stderr(&out));

    let running = Setup::new((Who::Tini, Place::Subreaper)).start(spool.path(), &[sigexit]);
    let program = running.program();
    running.signal(libc::SIGSEGV);
    wait_until("tini's end", || state(running.supervisor) == Some('Z'));
    // Its program runs on, and holds the output pipes open.
    assert_eq!(state(program), Some('S'));
    kill(program, libc::SIGKILL);
    let (out, _) = running.finish();
    assert_eq!(status_code(&out), 128 + libc::SIGSEGV);
}

/// Stops the program with `stop` (sent by `how`), then checks that a
/// signal forwarded meanwhile waits, and that SIGCONT sent to the
/// supervisor resumes the program, which then takes it.
fn stop_and_continue(setup: Setup, stop_directly: bool) {
    let spool = tempfile::tempdir().unwrap();
    let sigexit = fixture("sigexit");
    // SIGTSTP and SIGCONT keep their default actions: stop, continue.
    let (tstp, cont) = (libc::SIGTSTP.to_string(), libc::SIGCONT.to_string());
    let running = setup.start(spool.path(), &[sigexit.to_str().unwrap(), &tstp, &cont]);
    let program = running.program();
    if stop_directly {
        kill(program, libc::SIGSTOP);
    } else {
        running.signal(libc::SIGTSTP);
    }
    // 'T' stopped; 't' stopped under crashwatch's ptrace (PTRACE_LISTEN).
    wait_until("the program stopped", || matches!(state(program), Some('T' | 't')));
    assert!(matches!(state(running.supervisor), Some('S' | 'R')), "{setup:?}: the supervisor stopped");

    running.signal(libc::SIGUSR1);
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    wait_until("SIGUSR1 pending", || shared_pending(program) & usr1 != 0);
    assert!(matches!(state(program), Some('T' | 't')), "{setup:?}: a forwarded signal resumed the program");

    running.signal(libc::SIGCONT);
    let (out, _) = running.finish();
    assert_eq!(status_code(&out), 100 + libc::SIGUSR1, "{setup:?}: {}", stderr(&out));
}

#[test]
fn sigtstp_and_sigcont_stop_and_resume_the_program_not_the_supervisor() {
    for setup in BOTH.map(Setup::new) {
        stop_and_continue(setup, false);
    }
}

#[test]
fn a_program_stopped_from_outside_is_resumed_through_the_supervisor() {
    for setup in BOTH.map(Setup::new) {
        stop_and_continue(setup, true);
    }
}

/// `SigBlk` and `SigIgn` of `/proc/self/status`, as `cmd` shows them.
fn signal_state(cmd: std::process::Command) -> Vec<String> {
    let out = common::run_with_timeout(cmd, common::LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

const SHOW_STATE: [&str; 4] = ["grep", "-E", "^(SigBlk|SigIgn):", "/proc/self/status"];

#[test]
fn the_program_inherits_the_mask_and_ignored_signals_the_supervisor_did() {
    // tini's sigconf test: the parent leaves signals ignored and blocked;
    // the supervisor ignores or blocks most of them for itself, and must
    // give each back as it found it. The reference is the same program
    // run with no supervisor between.
    let spool = tempfile::tempdir().unwrap();
    let sigconf = fixture("sigconf");
    let sigconf = sigconf.to_str().unwrap();
    let mut direct = std::process::Command::new(sigconf);
    direct.args(SHOW_STATE);
    let expected = signal_state(direct);
    // Blocked: TTIN, ILL, TERM, RTMIN+3. Ignored: TTOU, SEGV, INT, HUP, PIPE,
    // and glibc's reserved 32 and 33, which its posix_spawn (this test's
    // Command) leaves ignored in every child.
    let rtmin3 = 1u64 << (libc::SIGRTMIN() + 3 - 1);
    assert_eq!(expected, [format!("SigBlk: {:016x}", 0x10_4008 | rtmin3), "SigIgn: 0000000180201003".into()]);
    // Without sigconf: what the supervisor ignores or blocks for itself
    // (SIGPIPE, the Rust runtime's; SIGTTIN, SIGTTOU; every signal it
    // forwards, blocked) must not show either.
    let plain = signal_state({
        let mut cmd = std::process::Command::new(SHOW_STATE[0]);
        cmd.args(&SHOW_STATE[1..]);
        cmd
    });
    assert_eq!(plain, ["SigBlk: 0000000000000000", "SigIgn: 0000000180000000"]);
    let mut setups = BOTH.map(Setup::new).to_vec();
    setups.push(Setup::new((Who::Crashwatch, Place::Plain)));
    for setup in setups {
        assert_eq!(signal_state(setup.command_after(&[sigconf], spool.path(), &SHOW_STATE)), expected, "{setup:?}");
        assert_eq!(signal_state(setup.command(spool.path(), &SHOW_STATE)), plain, "{setup:?}");
    }
}

#[test]
fn under_nohup_sighup_does_not_kill_the_program() {
    // nohup leaves SIGHUP ignored; the supervisor forwards it (as tini
    // does) and the program, which inherited the ignored SIGHUP, runs on
    // until the SIGTERM that follows.
    let spool = tempfile::tempdir().unwrap();
    let sigexit = fixture("sigexit");
    let hup = libc::SIGHUP.to_string();
    let program = [sigexit.to_str().unwrap(), &hup];
    for setup in BOTH.map(Setup::new) {
        let mut cmd = setup.command_after(&["nohup"], spool.path(), &program);
        let running = supervisors::start(setup, &mut cmd);
        running.signal(libc::SIGHUP);
        running.signal(libc::SIGTERM);
        let (out, _) = running.finish();
        assert_eq!(status_code(&out), 100 + libc::SIGTERM, "{setup:?}: {}", stderr(&out));
        // Without nohup, the same SIGHUP ends it with its default action.
        let running = setup.start(spool.path(), &program);
        running.signal(libc::SIGHUP);
        let (out, _) = running.finish();
        assert_eq!(status_code(&out), 128 + libc::SIGHUP, "{setup:?}: {}", stderr(&out));
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
