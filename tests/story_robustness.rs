//! Inputs that are not crash stories, garbage, and mangled real stories:
//! `detect` must never panic, must keep its indices in range, and must not
//! see crashes in ordinary log lines.

#[path = "story_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use crashwatch::story::{Crash, TailLine, detect};

/// Real crash output recorded in testdata plus transcribed shapes of the
/// runtimes not recorded there, as the seed corpus for mutation.
fn corpus() -> Vec<String> {
    let mut lines = Vec::new();
    for dir in ["testdata/go", "testdata/sanitizers"] {
        let mut files: Vec<_> = std::fs::read_dir(crate_path(dir))
            .expect("read testdata")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        for f in files {
            lines.extend(std::fs::read_to_string(f).expect("fixture").lines().map(str::to_owned));
        }
    }
    let shapes = [
        "thread 'main' (123) panicked at src/main.rs:2:5:",
        "thread 'main' panicked at 'boom', src/main.rs:2:5",
        "thread 'w' panicked at 'multi",
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        "stack backtrace:",
        "   0: std::panicking::begin_panic",
        "   1:     0x55d0c0ffee00 - app::main::h0123456789abcdef",
        "             at ./src/main.rs:4:5",
        "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        "thread 'main' has overflowed its stack",
        "fatal runtime error: stack overflow, aborting",
        "thread caused non-unwinding panic. aborting.",
        "Traceback (most recent call last):",
        "  File \"/srv/app.py\", line 3, in <module>",
        "  File \"/srv/app.py\", line 3",
        "    main()",
        "    ~~~^^",
        "  [Previous line repeated 996 more times]",
        "ValueError: bad",
        "KeyboardInterrupt",
        "",
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
        "SyntaxError: invalid syntax",
        "  + Exception Group Traceback (most recent call last):",
        "  |   File \"g.py\", line 2, in <module>",
        "  | ExceptionGroup: x (1 sub-exception)",
        "  +-+---------------- 1 ----------------",
        "Fatal Python error: Segmentation fault",
        "Current thread 0x00007f00 (most recent call first):",
        "  File \"/srv/app.py\", line 3 in f",
        "Exception in thread \"main\" java.lang.IllegalStateException: x",
        "\tat com.acme.Foo.bar(Foo.java:10)",
        "\tat java.base/java.lang.Thread.run(Thread.java:840)",
        "Caused by: java.io.IOException: y",
        "\t... 3 more",
        "\tSuppressed: java.io.IOException: z",
        "\t\tat com.acme.Foo.close(Foo.java:3)",
        "com.acme.Error: logged",
        "terminate called after throwing an instance of 'std::runtime_error'",
        "  what():  nope",
        "terminate called without an active exception",
        "libc++abi: terminating due to uncaught exception of type std::bad_alloc: std::bad_alloc",
        "AddressSanitizer:DEADLYSIGNAL",
        "==1==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000 (pc 0x1 bp 0x2 sp 0x3 T0)",
        "==1==ERROR: LeakSanitizer: detected memory leaks",
        "WARNING: ThreadSanitizer: data race (pid=1)",
        "x.c:1:2: runtime error: load of null pointer of type 'int'",
        "SUMMARY: AddressSanitizer: SEGV (/lib/libc.so.6+0x1) in f",
        "==1==ABORTING",
        "==================",
        "SIGSEGV: segmentation violation",
        "PC=0x1 m=0 sigcode=1",
        "goroutine 1 gp=0xc000002380 m=0 mp=0x5a1b40 [running]:",
        "created by main.main in goroutine 1",
        "panic: x [recovered]",
        "\tpanic: y",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x1]",
        "runtime stack:",
        "exit status 2",
        "rax    0x0",
    ];
    lines.extend(shapes.iter().map(|s| s.to_string()));
    lines
}

/// xorshift64*: deterministic, dependency-free randomness so a failure
/// reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const ALPHABET: &[char] = &[
    'a', 'Z', '0', '9', ' ', '\t', ':', '\'', '"', '(', ')', '[', ']', '.', '/', '=', '#', '+', '^', '~', '$', '<',
    '>', '-', '_', '\r', '\x1b', 'é', '𝄞', '\u{0}', '\u{feff}', ',', '@', '{', '}', '|', '\\', '*', '?',
];

fn garbage(rng: &mut Rng) -> String {
    let len = rng.below(80);
    (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect()
}

/// Mutates a corpus line: truncation at a char boundary, splicing garbage,
/// digit changes, or a number too large for u32.
fn mutate(rng: &mut Rng, line: &str) -> String {
    let cut = |rng: &mut Rng, s: &str| {
        let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        bounds[rng.below(bounds.len())]
    };
    match rng.below(6) {
        0 => line[..cut(rng, line)].to_owned(),
        1 => {
            let at = cut(rng, line);
            format!("{}{}{}", &line[..at], garbage(rng), &line[at..])
        }
        2 => line.replace(|c: char| c.is_ascii_digit(), "99999999999999999999"),
        3 => line.replace(':', ""),
        4 => format!("{line}{line}"),
        _ => line.to_owned(),
    }
}

/// Invariants every answer must satisfy.
fn check(tail: &[TailLine<'_>], c: &Crash) {
    assert!(c.first_line <= c.last_line, "first {} > last {}", c.first_line, c.last_line);
    assert!(c.last_line < tail.len(), "last_line {} out of range {}", c.last_line, tail.len());
    for ch in &c.chained {
        assert!(ch.last_line < tail.len());
        assert!(ch.first_line <= ch.last_line);
    }
    let json = serde_json::to_string(c).expect("serialise");
    let back: Crash = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(&back, c);
}

fn run_tail(lines: &[(bool, String)]) -> Option<Crash> {
    let tail: Vec<TailLine<'_>> = lines.iter().map(|(e, t)| TailLine { stderr: *e, text: t }).collect();
    let c = detect(&tail);
    if let Some(c) = &c {
        check(&tail, c);
    }
    c
}

#[test]
fn random_and_mutated_tails_never_panic() {
    let corpus = corpus();
    let mut found = 0;
    for seed in 1..=1500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let len = rng.below(120);
        let mut lines = Vec::with_capacity(len);
        // Runs of consecutive corpus lines keep real structure; the rest is
        // shuffled, mutated or pure garbage.
        while lines.len() < len {
            let stderr = rng.below(4) != 0;
            match rng.below(4) {
                0 => {
                    let start = rng.below(corpus.len());
                    let run = 1 + rng.below(30);
                    for l in corpus.iter().skip(start).take(run) {
                        lines.push((stderr, l.clone()));
                    }
                }
                1 => lines.push((stderr, corpus[rng.below(corpus.len())].clone())),
                2 => {
                    let l = &corpus[rng.below(corpus.len())];
                    lines.push((stderr, mutate(&mut rng, l)));
                }
                _ => lines.push((stderr, garbage(&mut rng))),
            }
        }
        found += usize::from(run_tail(&lines).is_some());
    }
    // The generator is meant to hit the parsers, not only miss them.
    assert!(found > 300, "only {found} tails produced a story");
}

#[test]
fn every_eviction_and_cut_of_real_output_is_safe() {
    for dir in ["testdata/go", "testdata/sanitizers"] {
        for entry in std::fs::read_dir(crate_path(dir)).expect("testdata") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|x| x != "txt") {
                continue;
            }
            let tail = Tail::stderr(&std::fs::read_to_string(&path).expect("fixture"));
            for k in 0..=tail.0.len() {
                run_tail(&tail.evict(k).0);
                run_tail(&tail.0[..k]);
            }
            // Each line cut short, too (every 5th boundary keeps this quick
            // in debug builds; the last characters are always tried).
            for (i, (_, line)) in tail.0.iter().enumerate() {
                let n = line.chars().count();
                for (k, (b, _)) in line.char_indices().enumerate() {
                    if k % 5 != 0 && k + 4 < n {
                        continue;
                    }
                    let mut t = tail.0.clone();
                    t[i].1 = line[..b].to_owned();
                    run_tail(&t);
                }
            }
        }
    }
}

#[test]
fn look_alikes_in_ordinary_logs_are_not_crashes() {
    let logs = [
        r#"INFO user said "panic: at the disco""#,
        "2024-05-01T10:00:00Z ERROR thread 'main' panicked at src/main.rs:1:1:",
        "DEBUG Traceback (most recent call last):",
        r#"WARN Exception in thread "main" java.lang.IllegalStateException: quoted"#,
        "see: terminate called after throwing an instance of 'std::runtime_error'",
        "log ==1==ERROR: AddressSanitizer: heap-use-after-free",
        "  panic: indented is not a Go header",
        "SIGTERM: terminated",
        "signal: SIGTERM received, shutting down",
        "server.port: 8080",
        "  1: first step",
        "  2: second step",
        "==========",
        "fatal: not a git repository",
        "ValueError: just printed by a handler",
        "goroutine pool started",
        "    at the end of the day",
    ];
    let as_stdout = Tail(logs.iter().map(|l| (false, l.to_string())).collect());
    assert_eq!(as_stdout.detect(), None, "{}", as_stdout.dump());
    let as_stderr = Tail(logs.iter().map(|l| (true, l.to_string())).collect());
    assert_eq!(as_stderr.detect(), None, "{}", as_stderr.dump());
    assert_eq!(Tail::default().detect(), None);
}

#[test]
fn crlf_and_colour_are_tolerated() {
    let tail = Tail::stderr(
        "Traceback (most recent call last):\r\n  File \"/srv/a.py\", line 1, in <module>\r\n\x1b[1;35mValueError\x1b[0m: \x1b[35mbad\x1b[0m\r\n",
    );
    let c = tail.crash();
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("ValueError", "bad"));
}

#[test]
fn stories_on_both_streams_last_one_wins() {
    let tail = Tail(vec![
        (true, "panic: first".into()),
        (true, "".into()),
        (true, "goroutine 1 [running]:".into()),
        (true, "main.main()".into()),
        (true, "\t/src/main.go:3 +0x1".into()),
        (false, "Traceback (most recent call last):".into()),
        (false, "  File \"/srv/a.py\", line 1, in <module>".into()),
        (false, "KeyError: 'x'".into()),
    ]);
    let c = tail.crash();
    assert_eq!(c.kind, "KeyError");
    assert_eq!((c.first_line, c.last_line), (5, 7));
}

#[test]
fn full_ring_is_fast() {
    // 1000 lines: mostly logs, with crash-shaped lines sprinkled in to make
    // every parser start and give up many times, then a real story.
    let mut lines: Vec<(bool, String)> = Vec::new();
    let corpus = corpus();
    let mut rng = Rng(7);
    while lines.len() < 940 {
        lines.push((rng.below(2) == 0, format!("INFO request {} took {}ms", lines.len(), rng.below(100))));
        if rng.below(5) == 0 {
            lines.push((true, corpus[rng.below(corpus.len())].clone()));
        }
    }
    let java = Tail::stderr(&format!(
        "Exception in thread \"main\" java.lang.StackOverflowError\n{}",
        "\tat com.acme.Rec.go(Rec.java:5)\n".repeat(1000 - lines.len() - 1)
    ));
    lines.extend(java.0);
    assert_eq!(lines.len(), 1000);
    let tail: Vec<TailLine<'_>> = lines.iter().map(|(e, t)| TailLine { stderr: *e, text: t }).collect();
    let c = detect(&tail).expect("story");
    assert_eq!(c.kind, "java.lang.StackOverflowError");
    let started = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        std::hint::black_box(detect(std::hint::black_box(&tail)));
    }
    let each = started.elapsed() / rounds;
    eprintln!("detect on a 1000-line tail: {each:?}");
    // Generous: debug builds of regex are slow; release is ~10x faster.
    assert!(each < Duration::from_millis(250), "detect took {each:?}");

    // Pathological: every line a header of the same kind.
    let same: Vec<(bool, String)> =
        (0..1000).map(|i| (true, format!("thread 'main' panicked at a.rs:{i}:1:"))).collect();
    let started = Instant::now();
    run_tail(&same);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}
