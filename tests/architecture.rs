//! The house rule of `src/lib.rs` as a test: which top-level module may use
//! which. Data flows one way (supervise → ptrace → capture → report →
//! symbolicate → sentry → outbox); the words every stage needs live in
//! leaves below them all. An import outside this list, or a cycle, fails
//! here with the file and line that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and the modules it may use (`crate::X`). `commands` wires
/// the stages into subcommands and may use all of them.
const ALLOWED: &[(&str, &[&str])] = &[
    // Leaves: the vocabulary and the raw syscalls.
    ("exit", &[]),
    ("errors", &[]),
    ("sys", &["exit"]),
    ("process", &["sys", "exit"]),
    ("story", &[]),
    ("logs", &["sys"]),
    ("symbolicate", &["sys"]),
    // Stages, each after what it uses.
    ("capture", &["process", "sys"]),
    ("ptrace", &["capture", "process", "sys"]),
    ("memory", &["process", "sys", "errors"]),
    ("supervise", &["ptrace", "capture", "memory", "process", "sys", "errors", "exit"]),
    ("report", &["capture", "memory", "story", "logs", "process", "errors"]),
    // A report's head (what `list` and retention read) names the child's
    // status and signal.
    ("spool", &["report", "process", "errors", "sys"]),
    ("sentry", &["report", "symbolicate", "spool", "story", "logs", "memory", "process", "errors", "sys"]),
    // Problems the child survives: read from the logs' tap, told as the
    // runtimes' stories, sent as Sentry events (the tap lives in logs and
    // knows nothing of live, since sentry already uses logs).
    ("live", &["logs", "story", "sentry"]),
    ("metrics", &["report"]),
    ("restart", &["process"]),
    ("cli", &["restart"]),
    // Options name the types of what they configure (the ring, the restart
    // policy, the spool, how minidumps are sent, the cron monitor).
    // ... and the level of --events-from-logs.
    ("hang", &["cli", "errors", "sys"]),
    ("config", &["cli", "logs", "restart", "spool", "sentry", "live", "hang"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` in code (comments and strings aside), with its line.
fn crate_refs(source: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"') {
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                refs.push((n + 1, name));
            }
        }
        // `use crate::{a::X, b}`: the names after the brace.
        if let Some(i) = code.find("use crate::{") {
            for part in code[i + "use crate::{".len()..].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "self" {
                    refs.push((n + 1, name));
                }
            }
        }
    }
    refs
}

#[test]
fn modules_use_only_what_the_pipeline_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(m, uses)| (*m, uses.iter().copied().collect())).collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        seen.insert(top.clone());
        if top == "commands" {
            continue;
        }
        let Some(may_use) = allowed.get(top.as_str()) else {
            violations.push(format!("src/{top} is not in the allow-list of tests/architecture.rs: place it"));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        for (line, used) in crate_refs(&source) {
            if used != top && !may_use.contains(used.as_str()) {
                violations.push(format!("{}:{line}: {top} uses {used}", rel.display()));
            }
        }
    }
    assert!(violations.is_empty(), "imports outside the allow-list:\n{}", violations.join("\n"));
    // Every listed module exists, so the list cannot go stale.
    for module in allowed.keys() {
        assert!(seen.contains(*module), "the allow-list names src/{module}, which does not exist");
    }
}

#[test]
fn the_allow_list_has_no_cycle() {
    let graph: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        assert!(!path.contains(&node), "cycle: {} -> {node}", path.join(" -> "));
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).copied().unwrap_or_default() {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let refs = crate_refs(
        "use crate::a::B;\nuse crate::{c::D, e};\nlet x = crate::f::g(); // crate::comment\nlet s = \"crate::str\";",
    );
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "c", "e", "f"]);
}
