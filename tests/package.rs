//! The Debian package, installed for real on this machine (the tests run as
//! root): `scripts/build-deb` packages a binary — the portable one when
//! CRASHWATCH_PACKAGE_BINARY names it (`.ci/run` builds it with
//! `scripts/build-release`), else the one under test — then `dpkg -i`
//! installs it, the files, man pages, completions, the spool directory and
//! the unit are checked, and `dpkg -r` removes it again, also when a check
//! fails.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use common::*;

const SPOOL: &str = "/var/lib/crashwatch";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// The package's state in dpkg's database (`None`: dpkg does not know it).
fn dpkg_status() -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", "crashwatch"]).output().unwrap();
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
}

/// The installed package; dropping it removes the package.
struct Installed;

impl Installed {
    fn new(deb: &Path) -> Installed {
        let out = Command::new("dpkg").arg("-i").arg(deb).stdin(Stdio::null()).output().unwrap();
        let installed = Installed;
        assert!(out.status.success(), "dpkg -i: {}", String::from_utf8_lossy(&out.stderr));
        installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["-r", "crashwatch"]).stdin(Stdio::null()).output().unwrap();
        if !out.status.success() && !std::thread::panicking() {
            panic!("dpkg -r: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// What bash completes on `words`, the last being the word under the cursor.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source /usr/share/bash-completion/completions/crashwatch
         COMP_WORDS=({words}); COMP_CWORD={cword}
         _crashwatch crashwatch '{cur}' '{prev}'
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    stdout(Command::new("bash").args(["--norc", "-c", &script])).lines().map(str::to_string).collect()
}

/// A man page rendered as plain ASCII text.
fn man(page: &str) -> String {
    stdout(Command::new("man").args(["-P", "cat", "-l", page]).env("LC_ALL", "C").env("MANWIDTH", "200"))
}

#[test]
fn the_debian_package_installs_works_and_removes_cleanly() {
    assert!(nix::unistd::geteuid().is_root(), "dpkg -i needs root");
    let before = dpkg_status();
    assert!(
        before.as_deref().is_none_or(|s| s.ends_with(" not-installed")),
        "the crashwatch package is already on this machine ({before:?}): remove it first (dpkg -r crashwatch)"
    );
    let spool_existed = Path::new(SPOOL).exists();

    let binary = std::env::var_os("CRASHWATCH_PACKAGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crashwatch")));
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb");
    let deb = PathBuf::from(stdout(Command::new(script).arg(&binary).arg(&out_dir)).trim());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(deb, out_dir.join(format!("crashwatch_{version}_amd64.deb")));

    // The spool directory is in the archive as root's, 0700.
    let contents = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(
        contents.lines().any(|l| l.starts_with("drwx------ root/root") && l.ends_with(" ./var/lib/crashwatch/")),
        "{contents}"
    );

    {
        let _installed = Installed::new(&deb);
        assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));

        // The files.
        let listed = stdout(Command::new("dpkg").args(["-L", "crashwatch"]));
        let listed: Vec<&str> = listed.lines().collect();
        let mut pages: Vec<String> = crashwatch::cli::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("/usr/share/man/man1/crashwatch-{}.1.gz", s.get_name()))
            .collect();
        pages.push("/usr/share/man/man1/crashwatch.1.gz".to_string());
        let expected = [
            "/usr/bin/crashwatch",
            "/usr/lib/systemd/system/crashwatch@.service",
            "/usr/lib/systemd/system/crashwatch-send.service",
            "/usr/share/doc/crashwatch/examples/notify.conf",
            "/usr/share/doc/crashwatch/examples/wrap-existing.conf",
            "/usr/share/doc/crashwatch/copyright",
            "/usr/share/bash-completion/completions/crashwatch",
            "/usr/share/zsh/vendor-completions/_crashwatch",
            "/usr/share/fish/vendor_completions.d/crashwatch.fish",
            SPOOL,
        ];
        for file in expected.iter().copied().chain(pages.iter().map(String::as_str)) {
            assert!(listed.contains(&file), "{file} is not in the package: {listed:#?}");
            assert!(Path::new(file).exists(), "{file} was not installed");
        }
        let man_pages = listed.iter().filter(|f| f.starts_with("/usr/share/man/man1/")).count();
        assert_eq!(man_pages, pages.len(), "{listed:#?}");

        // The binary: the one given, without its debug info, and it works.
        let installed = std::fs::read("/usr/bin/crashwatch").unwrap();
        let elf = object::File::parse(&*installed).unwrap();
        use object::{Object, ObjectSection};
        // (.debug_gdb_scripts is loaded with the program: rustc's pointer to
        // its pretty-printers, not debug information.)
        let debug: Vec<_> = elf
            .sections()
            .filter_map(|s| s.name().ok().filter(|n| n.starts_with(".debug_") && *n != ".debug_gdb_scripts"))
            .map(str::to_string)
            .collect();
        assert!(debug.is_empty(), "debug sections in the shipped binary: {debug:?}");
        let version_line = stdout(Command::new("/usr/bin/crashwatch").arg("--version"));
        assert_eq!(version_line, format!("crashwatch {version}\n"));
        let spool = tempfile::tempdir().unwrap();
        let crashed = Command::new("/usr/bin/crashwatch")
            .args(["run", "--spool-dir"])
            .arg(spool.path())
            .args(["--", "sh", "-c", "kill -SEGV $$"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), Some(139), "{}", String::from_utf8_lossy(&crashed.stderr));
        assert_eq!(only_report(spool.path())["crash"]["signal_name"], "SIGSEGV");

        // The spool directory: root's, 0700.
        let meta = std::fs::metadata(SPOOL).unwrap();
        assert!(meta.is_dir());
        assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o700, 0, 0));

        // The man pages, found by name and readable.
        assert_eq!(stdout(Command::new("man").args(["-w", "crashwatch"])), "/usr/share/man/man1/crashwatch.1.gz\n");
        let top = man("/usr/share/man/man1/crashwatch.1.gz");
        assert!(top.contains("crashwatch - Out-of-process crash supervisor: runs a program"), "{top}");
        for section in ["SYNOPSIS", "SUBCOMMANDS", "EXIT STATUS", "ENVIRONMENT"] {
            assert!(top.lines().any(|l| l == section), "no {section} in {top}");
        }
        assert!(top.contains("  139 ") || top.contains("128+N"), "{top}");
        assert!(top.contains("crashwatch-debug(1)") && !top.contains("generate"), "{top}");
        let run_page = man("/usr/share/man/man1/crashwatch-run.1.gz");
        assert!(run_page.contains("--memory-limit <BYTES>"), "{run_page}");
        assert!(run_page.contains("CRASHWATCH_MEMORY_LIMIT"), "{run_page}");

        // The completions: bash's works; zsh's and fish's are for crashwatch.
        let subcommands = bash_completes(&["crashwatch", ""]);
        for sub in ["run", "list", "show", "debug", "dump", "symbolicate"] {
            assert!(subcommands.iter().any(|s| s == sub), "{sub} not completed: {subcommands:?}");
        }
        assert!(!subcommands.iter().any(|s| s == "generate"), "{subcommands:?}");
        assert_eq!(bash_completes(&["crashwatch", "run", "--memory-l"]), ["--memory-limit"]);
        let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_crashwatch").unwrap();
        assert!(zsh.starts_with("#compdef crashwatch\n"), "{zsh}");
        let fish = std::fs::read_to_string("/usr/share/fish/vendor_completions.d/crashwatch.fish").unwrap();
        assert!(fish.contains("complete -c crashwatch -n \"__fish_crashwatch_needs_command\" -f -a \"run\""), "{fish}");

        // The unit runs the packaged binary and verifies as installed.
        let unit = std::fs::read_to_string("/usr/lib/systemd/system/crashwatch@.service").unwrap();
        assert!(unit.contains("\nExecStart=/usr/bin/crashwatch run -- $COMMAND\n"), "{unit}");
        let verify = Command::new("systemd-analyze").args(["verify", "crashwatch@demo.service"]).output().unwrap();
        let complaints = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && complaints.is_empty(), "{complaints}");
        let sender = std::fs::read_to_string("/usr/lib/systemd/system/crashwatch-send.service").unwrap();
        assert!(sender.contains("\nExecStart=/usr/bin/crashwatch send --watch\n"), "{sender}");
        let verify = Command::new("systemd-analyze").args(["verify", "crashwatch-send.service"]).output().unwrap();
        let complaints = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && complaints.is_empty(), "{complaints}");
        let example = std::fs::read_to_string("/usr/share/doc/crashwatch/examples/wrap-existing.conf").unwrap();
        assert!(example.contains("\nExecStart=/usr/bin/crashwatch run -- "), "{example}");
    }

    // Removed: no files left, dpkg forgets the package, and the spool
    // directory is gone unless it was there before (its reports are kept).
    assert!(dpkg_status().as_deref().is_none_or(|s| s.ends_with(" not-installed")), "{:?}", dpkg_status());
    for gone in ["/usr/bin/crashwatch", "/usr/lib/systemd/system/crashwatch@.service", "/usr/share/doc/crashwatch"] {
        assert!(!Path::new(gone).exists(), "{gone} left behind");
    }
    assert_eq!(Path::new(SPOOL).exists(), spool_existed);
}
