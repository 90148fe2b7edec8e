//! Helpers shared by the integration tests: running real toolchains, building
//! tails, and comparing crashes independent of line positions.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crashwatch::story::{Crash, Frame, TailLine, detect};

/// Path of a file under the crate root.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// True if `tool --version` (or `-version`) runs. Used to fail with a clear
/// message instead of an obscure spawn error.
pub fn have(tool: &str) -> bool {
    ["--version", "-version"].iter().any(|flag| Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success()))
}

pub fn require(tool: &str) {
    assert!(have(tool), "`{tool}` is needed to produce real crash output for this test; install it");
}

/// Runs `cmd`, which is expected to die, and returns (stdout, stderr).
pub fn run_crashing(cmd: &mut Command) -> (String, String) {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} was expected to fail; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An owned tail: (is_stderr, text) per line, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Tail(pub Vec<(bool, String)>);

impl Tail {
    pub fn stderr(text: &str) -> Self {
        Tail(text.lines().map(|l| (true, l.to_owned())).collect())
    }

    /// stdout lines first (as a child typically prints its banner before
    /// dying), then stderr.
    pub fn streams(stdout: &str, stderr: &str) -> Self {
        let mut t = Tail(stdout.lines().map(|l| (false, l.to_owned())).collect());
        t.0.extend(stderr.lines().map(|l| (true, l.to_owned())));
        t
    }

    /// Inserts a stdout noise line after every `every` lines.
    pub fn interleave_stdout(&self, every: usize) -> Self {
        let mut out = Vec::new();
        for (i, l) in self.0.iter().enumerate() {
            out.push(l.clone());
            if (i + 1) % every == 0 {
                out.push((false, format!("INFO request {i} served in 3ms")));
            }
        }
        Tail(out)
    }

    /// Drops the first `n` lines, as a full ring does.
    pub fn evict(&self, n: usize) -> Self {
        Tail(self.0.iter().skip(n).cloned().collect())
    }

    pub fn then(mut self, other: &Tail) -> Self {
        self.0.extend(other.0.iter().cloned());
        self
    }

    pub fn lines(&self) -> Vec<TailLine<'_>> {
        self.0.iter().map(|(stderr, text)| TailLine { stderr: *stderr, text }).collect()
    }

    pub fn detect(&self) -> Option<Crash> {
        detect(&self.lines())
    }

    pub fn text(&self, idx: usize) -> &str {
        &self.0[idx].1
    }

    /// Detects and fails with the tail printed if nothing is found.
    pub fn crash(&self) -> Crash {
        self.detect().unwrap_or_else(|| panic!("no crash story found in:\n{}", self.dump()))
    }

    pub fn dump(&self) -> String {
        self.0.iter().map(|(e, t)| format!("{} {t}\n", if *e { "E" } else { "O" })).collect()
    }
}

/// The crash with line positions cleared, to compare stories found at
/// different positions.
pub fn positionless(c: &Crash) -> Crash {
    let mut c = c.clone();
    c.first_line = 0;
    c.last_line = 0;
    c.chained = c.chained.iter().map(positionless).collect();
    c
}

/// Asserts that interleaving stdout noise at several rates leaves the story
/// unchanged and that its first line still points at the same text.
pub fn assert_interleaving_harmless(tail: &Tail) {
    let base = tail.crash();
    for every in [1, 2, 3, 7] {
        let noisy = tail.interleave_stdout(every);
        let c = noisy.crash();
        assert_eq!(positionless(&c), positionless(&base), "interleaving every {every} changed the story");
        assert_eq!(noisy.text(c.first_line), tail.text(base.first_line));
        assert_eq!(noisy.text(c.last_line), tail.text(base.last_line));
    }
}

pub fn functions(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.function.as_deref().unwrap_or("?")).collect()
}

/// Asserts a frame's function, file suffix and line.
#[track_caller]
pub fn assert_frame(f: &Frame, function: Option<&str>, file_suffix: &str, line: u32) {
    assert_eq!(f.function.as_deref(), function, "function of {f:?}");
    let file = f.filename.as_deref().unwrap_or("");
    assert!(file.ends_with(file_suffix), "file {file:?} should end with {file_suffix:?}");
    assert_eq!(f.lineno, Some(line), "line of {f:?}");
}

/// A fresh temporary directory for build products.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
