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
    /// The function's name as the module's symbol table spells it
    /// (mangled for C++ and Rust); `None` for inlined frames and names
    /// from Breakpad files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Start of the function; `None` for inlined frames.
    pub function_address: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
    /// How the frame was found: `context`, `cfi`, `frame_pointer`, `scan`,
    /// `cfi_scan`, `prewalked`, or `inlined` for inlined frames.
    pub trust: String,
}

/// What a module's frames were named from: what its files were found to
/// hold, or the Breakpad source that named them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SymbolSource {
    /// Its files were read and hold no symbols, or could not be read.
    None,
    /// Not looked at: no frame is in it.
    Unread,
    /// DWARF (functions, files, lines, inlined calls) in the file or its
    /// separate debug file.
    Dwarf,
    /// A `.symtab` (the file's, or its MiniDebugInfo's) but no DWARF: every
    /// function's name, no lines.
    Symtab,
    /// Only `.dynsym`: names of exported functions; frames in any other
    /// function are shown as `module + offset`.
    Dynsym,
    /// A Breakpad `.sym` file from a local symbol directory.
    Breakpad,
    /// A Breakpad `.sym` file from a symbol server (or its on-disk cache).
    Http,
    /// Written by older versions for DWARF or symbol tables, without
    /// saying which.
    Debuginfo,
}

impl SymbolSource {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolSource::None => "none",
            SymbolSource::Unread => "unread",
            SymbolSource::Dwarf => "dwarf",
            SymbolSource::Symtab => "symtab",
            SymbolSource::Dynsym => "dynsym",
            SymbolSource::Breakpad => "breakpad",
            SymbolSource::Http => "http",
            SymbolSource::Debuginfo => "debuginfo",
        }
    }

    /// The words the module list shows.
    pub fn label(self) -> &'static str {
        match self {
            SymbolSource::None => "none",
            SymbolSource::Unread => "not read (no frame in it)",
            SymbolSource::Dwarf => "DWARF",
            SymbolSource::Symtab => "symtab",
            SymbolSource::Dynsym => "dynsym only",
            SymbolSource::Breakpad => "breakpad .sym",
            SymbolSource::Http => "breakpad .sym from a symbol server",
            SymbolSource::Debuginfo => "debuginfo",
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
    /// Where this record of the module starts.
    pub base: u64,
    pub size: u64,
    /// Where the file's first segment is mapped: what offsets into the
    /// module (`module + 0x…`, `addr2line` addresses of a PIE file) are
    /// relative to. Usually `base`; not when the file was mapped in pieces
    /// that the dump records as several modules (node). `None` in records
    /// written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_base: Option<u64>,
    /// What this module's frames were named from.
    pub symbols: SymbolSource,
    /// Why this module's own files were not used, e.g. a build-id mismatch.
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_source_serializes_lowercase() {
        let all = [
            SymbolSource::None,
            SymbolSource::Unread,
            SymbolSource::Dwarf,
            SymbolSource::Symtab,
            SymbolSource::Dynsym,
            SymbolSource::Breakpad,
            SymbolSource::Http,
            SymbolSource::Debuginfo,
        ];
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(json, r#"["none","unread","dwarf","symtab","dynsym","breakpad","http","debuginfo"]"#);
        for s in all {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
