//! A readable crash summary, in the spirit of minidump-stackwalk's output.
//!
//! This is what `crashwatch run` prints on a laptop when the child crashes,
//! so it leads with what a developer needs: reason, diagnosis, the crashing
//! thread with `module!function (file:line)` per frame. Other threads and the
//! module list (with build-ids and why a module's files were not used)
//! follow for the record.

use std::fmt::Write as _;

use super::model::{Frame, Module, Symbolicated, Thread};

/// Renders `s` as text. Addresses are hex with `0x`, so tests can redact them.
pub fn render_text(s: &Symbolicated) -> String {
    let mut out = String::new();
    // `write!` to a String cannot fail; the results are ignored on purpose.
    match &s.crash_reason {
        Some(reason) => {
            let _ = writeln!(out, "Crash reason:  {reason}");
        }
        None => out.push_str("No crash recorded in the dump\n"),
    }
    if let Some(address) = s.crash_address {
        let _ = writeln!(out, "Crash address: {address:#x}");
    }
    if let Some(diagnosis) = &s.diagnosis {
        let _ = writeln!(out, "Diagnosis:     {diagnosis}");
    }
    let _ = writeln!(out, "System:        {} {}", s.os, s.cpu);

    let mut order: Vec<usize> = (0..s.threads.len()).collect();
    if let Some(crashed) = s.crashing_thread.filter(|&i| i < s.threads.len()) {
        order.retain(|&i| i != crashed);
        order.insert(0, crashed);
    }
    for index in order {
        out.push('\n');
        render_thread(&mut out, index, &s.threads[index], s.crashing_thread == Some(index), &s.modules);
    }

    out.push_str("\nModules:\n");
    for m in &s.modules {
        let _ = writeln!(
            out,
            "  {:#x} - {:#x}  {}  build-id {}  symbols: {}",
            m.base,
            m.base.saturating_add(m.size),
            m.code_file,
            m.code_id.as_deref().unwrap_or("none"),
            m.symbols.label()
        );
        if let Some(problem) = &m.problem {
            let _ = writeln!(out, "      problem: {problem}");
        }
    }
    out
}

fn render_thread(out: &mut String, index: usize, thread: &Thread, crashed: bool, modules: &[Module]) {
    let _ = write!(out, "Thread {index}");
    if crashed {
        out.push_str(" (crashed)");
    }
    let _ = write!(out, " tid {}", thread.tid);
    if let Some(name) = &thread.name {
        let _ = write!(out, " {name:?}");
    }
    out.push('\n');
    if thread.frames.is_empty() {
        out.push_str("  (no frames: the dump has no usable context for this thread)\n");
    }
    for (n, frame) in thread.frames.iter().enumerate() {
        let _ = writeln!(out, "  #{n:<3} {}", frame_text(frame, modules));
    }
}

fn frame_text(f: &Frame, modules: &[Module]) -> String {
    // An offset from where the file's first segment is mapped: what
    // `addr2line -e FILE` takes for a PIE file.
    let image_base =
        f.module_base.map(|base| modules.iter().find(|m| m.base == base).and_then(|m| m.image_base).unwrap_or(base));
    let mut text = match (&f.module, &f.function) {
        (Some(module), Some(function)) => format!("{module}!{function}"),
        (Some(module), None) => format!("{module} + {:#x}", f.instruction.saturating_sub(image_base.unwrap_or(0))),
        (None, Some(function)) => function.clone(),
        (None, None) => format!("{:#x}", f.instruction),
    };
    if let Some(file) = &f.file {
        let _ = match f.line {
            Some(line) if line > 0 => write!(text, " ({file}:{line})"),
            _ => write!(text, " ({file})"),
        };
    }
    if f.inlined {
        text.push_str(" [inlined]");
    } else if matches!(f.trust.as_str(), "scan" | "cfi_scan") {
        // Found by scanning the stack for return addresses: may be bogus.
        text.push_str(" [scanned]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolicate::model::SymbolSource;

    fn frame(function: Option<&str>, inlined: bool, trust: &str) -> Frame {
        Frame {
            instruction: 0x1234,
            module: Some("app".into()),
            module_base: Some(0x1000),
            function: function.map(str::to_owned),
            symbol: None,
            function_address: None,
            file: function.map(|_| "/src/app.c".to_owned()),
            line: function.map(|_| 7),
            inlined,
            trust: trust.into(),
        }
    }

    #[test]
    fn crashing_thread_first_and_frames_marked() {
        let s = Symbolicated {
            cpu: "amd64".into(),
            os: "Linux".into(),
            crash_reason: Some("SIGSEGV / SEGV_MAPERR".into()),
            crash_address: Some(0),
            crashing_thread: Some(1),
            diagnosis: Some("null pointer dereference".into()),
            threads: vec![
                Thread { tid: 10, name: None, frames: vec![] },
                Thread {
                    tid: 11,
                    name: Some("worker".into()),
                    frames: vec![
                        frame(Some("inner"), true, "inlined"),
                        frame(Some("outer"), false, "context"),
                        frame(None, false, "scan"),
                    ],
                },
            ],
            modules: vec![Module {
                code_file: "/bin/app".into(),
                code_id: Some("ab".into()),
                debug_id: None,
                base: 0x1000,
                size: 0x1000,
                image_base: Some(0x1000),
                symbols: SymbolSource::Dwarf,
                problem: Some("build-id mismatch: file on disk is cd expected ab".into()),
            }],
        };
        let text = render_text(&s);
        let expected = "\
Crash reason:  SIGSEGV / SEGV_MAPERR
Crash address: 0x0
Diagnosis:     null pointer dereference
System:        Linux amd64

Thread 1 (crashed) tid 11 \"worker\"
  #0   app!inner (/src/app.c:7) [inlined]
  #1   app!outer (/src/app.c:7)
  #2   app + 0x234 [scanned]

Thread 0 tid 10
  (no frames: the dump has no usable context for this thread)

Modules:
  0x1000 - 0x2000  /bin/app  build-id ab  symbols: DWARF
      problem: build-id mismatch: file on disk is cd expected ab
";
        assert_eq!(text, expected);
    }
}
