//! The symbolicated crash, as plain serde data.
//!
//! This is what the `crashwatch symbolicate --json` helper prints and what the
//! supervisor reads back, so it carries no minidump types and no borrowed
//! data: the supervisor never links the symbolication stack's state into its
//! own long-lived memory. Addresses are absolute (as in the crashed process);
//! `module_base` lets consumers make them module-relative.

use serde::{Deserialize, Serialize};

/// The symbolicated crash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Symbolicated {
    /// CPU architecture as rust-minidump names it (`amd64`, `arm64`, …).
    pub cpu: String,
    /// Operating system (`Linux`, …).
    pub os: String,
    /// Signal and code, e.g. `SIGSEGV / SEGV_MAPERR`.
    pub crash_reason: Option<String>,
    /// Faulting address (for `SIGSEGV`/`SIGBUS`), else the instruction.
    pub crash_address: Option<u64>,
    /// Index into `threads` of the thread that crashed.
    pub crashing_thread: Option<usize>,
    /// rust-minidump's analysis of the crashing instruction, in words: null
    /// pointer, guard page (stack overflow), non-canonical address, bad
    /// jump, possible bit flip. `None` when nothing stood out.
    pub diagnosis: Option<String>,
    pub threads: Vec<Thread>,
    pub modules: Vec<Module>,
}

/// One thread's stack.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Thread {
    pub tid: u32,
    pub name: Option<String>,
    /// Innermost first. Inlined calls are frames of their own, before the
    /// physical frame they were inlined into.
    pub frames: Vec<Frame>,
}

/// One frame: a physical stack frame or a call inlined into one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Frame {
    /// For the innermost frame the exact instruction pointer; for callers an
    /// address inside the call instruction (return address - 1), so that it
    /// maps to the line of the call.
    pub instruction: u64,
    /// File name of the module (`libc.so.6`), not the full path.
    pub module: Option<String>,
    pub module_base: Option<u64>,
    /// Demangled name; `None` when no source had a real name (placeholder
    /// names such as `fun_1234` are dropped).
    pub function: Option<String>,
    /// Start of the function; `None` for inlined frames.
    pub function_address: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
    /// How the frame was found: `context`, `cfi`, `frame_pointer`, `scan`,
    /// `cfi_scan`, `prewalked`, or `inlined` for inlined frames.
    pub trust: String,
}

/// Where a module's symbols came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SymbolSource {
    /// Not symbolicated (not on any stack, or nothing found).
    None,
    /// DWARF / symbol tables of the ELF file or its separate debug file.
    Debuginfo,
    /// A Breakpad `.sym` file from a local symbol directory.
    Breakpad,
    /// A Breakpad `.sym` file from a symbol server (or its on-disk cache).
    Http,
}

impl SymbolSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolSource::None => "none",
            SymbolSource::Debuginfo => "debuginfo",
            SymbolSource::Breakpad => "breakpad",
            SymbolSource::Http => "http",
        }
    }
}

/// A module (executable or shared library) mapped in the crashed process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Module {
    /// Path as recorded in the dump.
    pub code_file: String,
    /// ELF build-id in hex (or minidump-writer's hash of `.text` for files
    /// without one).
    pub code_id: Option<String>,
    /// Breakpad debug id (what `.sym` directories are keyed by).
    pub debug_id: Option<String>,
    pub base: u64,
    pub size: u64,
    /// The source that symbolicated this module's frames.
    pub symbols: SymbolSource,
    /// Why this module's own files were not used, e.g. a build-id mismatch.
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_source_serializes_lowercase() {
        let json = serde_json::to_string(&[
            SymbolSource::None,
            SymbolSource::Debuginfo,
            SymbolSource::Breakpad,
            SymbolSource::Http,
        ])
        .unwrap();
        assert_eq!(json, r#"["none","debuginfo","breakpad","http"]"#);
        for s in [SymbolSource::Debuginfo, SymbolSource::Http] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
