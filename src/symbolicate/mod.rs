//! Host-side symbolication of a minidump: threads, frames with function,
//! file, line and inlined calls, and a diagnosis of the crash.
//!
//! # Design
//!
//! ```text
//!  dump file ──read into memory──► minidump::Minidump
//!      │ module list: for every module, compute the identifier of the file
//!      │ at its path (or of its preserved copy) and keep it only if it
//!      │ matches the dump                                  (identity.rs)
//!      ▼
//!  Provider: framehop unwinder over the verified files, symbol sources
//!      │ loaded lazily per module on first use:            (provider.rs)
//!      │   debuginfo (ELF symbols + DWARF, build-id debug dirs,
//!      │   .gnu_debuglink, MiniDebugInfo; module_symbols.rs,
//!      │   elf_symbols.rs, symbol_list.rs, dwarf/) → .sym directories
//!      │   → symbol servers
//!      ▼
//!  minidump-processor: stack walk (CFI, frame pointers, scanning)
//!      │ + rust-minidump's crash inspection
//!      ▼
//!  Symbolicated (plain serde data)  ──► render_text     (convert.rs, render.rs)
//! ```
//!
//! Why it is shaped this way:
//! - **Meant for a short-lived process.** Symbol tables and DWARF indexes
//!   cost tens to hundreds of MB; the supervisor runs this as
//!   `crashwatch symbolicate --json DUMP` and reads the JSON back, so that
//!   memory is returned to the system when the helper exits. Nothing here
//!   keeps global state (no caches in statics, no global tracing or panic
//!   hook): each call builds its runtime, provider and caches and drops them.
//! - **A wrong name is worse than no name.** Files are used only when their
//!   build-id matches the dump (see `identity.rs`); a module whose file was
//!   replaced is left unsymbolicated with a `problem` saying why, unless a
//!   preserved copy that matches is given in [`SymbolOptions::replacements`].
//!   A symbol names only the addresses inside it (a frame in a function a
//!   stripped file does not export is `module + offset`), C names are never
//!   demangled, and addresses are taken relative to where the file is
//!   really loaded, not to where the dump's record of it starts
//!   (`symbol_list.rs`, `demangle.rs`, `layout.rs`). Checked against
//!   binutils in `tests/symbolicate_oracle.rs`.
//! - **One source per frame.** See `provider.rs`: no duplicate inline frames.
//! - **Never panic on input.** The dump is read into memory (not mapped, so
//!   a dump truncated under us cannot raise `SIGBUS`; the verified ELF files
//!   are mapped, see `sys/mapped.rs`); malformed dumps are
//!   errors; CPUs other than x86_64/arm64 skip the DWARF-CFI unwinder that
//!   would hit `unimplemented!`; and the whole call runs under
//!   `catch_unwind` so a panic in a dependency becomes
//!   [`SymbolicateError::Panicked`].

//!
//! # Cost
//!
//! A module costs its symbol table's indices, the DWARF sections addr2line
//! needs (decompressed only when compressed), a pass over each unit's first
//! entry, and then only the units that hold the addresses asked about
//! (`dwarf/`); minidump-stackwalk loads every module eagerly. Figures
//! against it are in BENCHMARKS.md.

mod convert;
mod demangle;
mod dwarf;
mod elf_symbols;
#[cfg(test)]
mod equivalence_tests;
mod error;
mod identity;
mod layout;
mod model;
mod module_symbols;
mod provider;
mod render;
mod sigframe;
mod symbol_list;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use minidump::{
    CodeView, Minidump, MinidumpLinuxMaps, MinidumpModuleList, MinidumpSystemInfo, MinidumpThreadList, Module as _,
};
use minidump_unwind::{Symbolizer, http_symbol_supplier, simple_symbol_supplier};

pub use error::SymbolicateError;
pub use identity::{DebugInfo, IdentityError, SYSTEM_DEBUG_DIR, debug_info};
pub use model::{Frame, Module, SymbolSource, Symbolicated, Thread};
pub use render::render_text;

use module_symbols::SymbolStore;
use provider::{ModuleFacts, Provider};

/// Largest dump read into memory. minidump-writer's dumps hold stacks and a
/// little memory around the crash: a few MB even with hundreds of threads.
/// Anything bigger than this is not one of ours (or is `/dev/zero`).
pub const MAX_DUMP_BYTES: u64 = 1 << 30;

/// Bound on one `.sym` download (breakpad-symbols may parse what arrived).
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where symbols may come from, besides the ELF files named in the dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolOptions {
    /// Breakpad symbol trees: `DIR/MODULE/DEBUGID/MODULE.sym`.
    pub symbol_dirs: Vec<PathBuf>,
    /// Breakpad symbol servers (same layout under the URL), asked after
    /// the local sources.
    pub symbol_urls: Vec<String>,
    /// Keeps downloaded `.sym` files between runs. Without it downloads go
    /// to a temporary directory removed when the call returns.
    pub cache_dir: Option<PathBuf>,
    /// Roots searched for `ROOT/.build-id/xx/rest.debug` separate debug
    /// files (checked by build-id). `/usr/lib/debug` is always searched too
    /// (as wholesym does), and `.gnu_debuglink` is followed.
    pub debug_dirs: Vec<PathBuf>,
    /// `(code_file as recorded in the dump, preserved copy of that file)`,
    /// e.g. a binary deleted or replaced by a deploy while it ran. Used only
    /// if the copy's build-id matches the dump.
    pub replacements: Vec<(PathBuf, PathBuf)>,
}

impl Default for SymbolOptions {
    fn default() -> Self {
        SymbolOptions {
            symbol_dirs: Vec::new(),
            symbol_urls: Vec::new(),
            cache_dir: None,
            debug_dirs: vec![PathBuf::from(identity::SYSTEM_DEBUG_DIR)],
            replacements: Vec::new(),
        }
    }
}

/// Symbolicates the minidump at `dump`.
///
/// Blocking; builds and drops its own single-threaded async runtime, so it
/// must not be called from inside an async runtime's worker thread. It uses
/// up to two more threads for a while (symbols of the main executable are
/// loaded ahead of the walk; a large compressed section is inflated beside
/// the others); they are joined before it returns.
pub fn symbolicate(dump: &Path, opts: &SymbolOptions) -> Result<Symbolicated, SymbolicateError> {
    for url in &opts.symbol_urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SymbolicateError::BadSymbolUrl { path: dump.to_owned(), url: url.clone() });
        }
    }
    let bytes = read_dump(dump)?;
    // The closure owns everything it touches; nothing it leaves half-updated
    // is observed after a panic, hence AssertUnwindSafe.
    match catch_unwind(AssertUnwindSafe(|| symbolicate_bytes(dump, bytes, opts))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(SymbolicateError::Panicked { path: dump.to_owned(), message })
        }
    }
}

fn read_dump(path: &Path) -> Result<Vec<u8>, SymbolicateError> {
    use std::io::Read as _;
    let read_error = |source| SymbolicateError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(SymbolicateError::NotAMinidump { path: path.to_owned(), reason: "not a regular file".to_owned() });
    }
    if meta.len() > MAX_DUMP_BYTES {
        return Err(SymbolicateError::NotAMinidump {
            path: path.to_owned(),
            reason: format!("{} bytes, more than the {MAX_DUMP_BYTES} accepted", meta.len()),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` in case the file grows while we read it.
    file.take(MAX_DUMP_BYTES).read_to_end(&mut bytes).map_err(read_error)?;
    Ok(bytes)
}

fn symbolicate_bytes(path: &Path, bytes: Vec<u8>, opts: &SymbolOptions) -> Result<Symbolicated, SymbolicateError> {
    let not_a_minidump = |reason: String| SymbolicateError::NotAMinidump { path: path.to_owned(), reason };
    let dump = Minidump::read(bytes).map_err(|e| not_a_minidump(e.to_string()))?;
    // minidump-processor only requires these two; checking here gives the
    // reason in the caller's words rather than its error enum's.
    let system_info: MinidumpSystemInfo =
        dump.get_stream().map_err(|e| not_a_minidump(format!("no system info stream: {e}")))?;
    dump.get_stream::<MinidumpThreadList>().map_err(|e| not_a_minidump(format!("no thread list stream: {e}")))?;
    let modules: MinidumpModuleList = dump.get_stream().unwrap_or_default();
    let maps: Option<MinidumpLinuxMaps> = dump.get_stream().ok();

    let facts: Vec<ModuleFacts> = modules
        .iter()
        .map(|m| {
            let identifier = match &m.codeview_info {
                Some(CodeView::Elf(elf)) if elf.build_id.iter().any(|b| *b != 0) => Some(elf.build_id.clone()),
                _ => None,
            };
            let base = m.base_address();
            let located = identity::locate(&m.code_file(), identifier.as_deref(), &opts.replacements);
            // Where the record's first mapping starts in the file.
            let offset = maps
                .as_ref()
                .and_then(|maps| maps.memory_info_at_address(base))
                .filter(|info| info.map.address.0 == base)
                .map(|info| info.map.offset);
            let image_base = match (&located.file, offset) {
                (Some(file), Some(offset)) => layout::image_base(file, base, offset).unwrap_or(base),
                _ => base,
            };
            ModuleFacts { base, image_base, located, identifier, debug_id: m.debug_identifier() }
        })
        .collect();

    // Held until the end of the call: the HTTP supplier writes into it.
    let scratch = http_dirs(path, opts)?;
    let mut breakpad = Vec::new();
    if !opts.symbol_dirs.is_empty() {
        breakpad.push((Symbolizer::new(simple_symbol_supplier(opts.symbol_dirs.clone())), SymbolSource::Breakpad));
    }
    if let Some((cache, tmp, _guard)) = &scratch {
        breakpad.push((
            Symbolizer::new(http_symbol_supplier(
                Vec::new(),
                opts.symbol_urls.clone(),
                cache.clone(),
                tmp.path().to_owned(),
                HTTP_TIMEOUT,
            )),
            SymbolSource::Http,
        ));
    }

    // reqwest (symbol servers) needs the IO and time drivers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SymbolicateError::Runtime { path: path.to_owned(), source })?;
    // Declared before the provider, so it outlives it: the provider's
    // symbols borrow the mapped files it holds.
    let store = SymbolStore::new(&facts);
    let provider = runtime.block_on(Provider::new(
        Some(&system_info),
        &modules,
        &facts,
        &store,
        opts.debug_dirs.clone(),
        breakpad,
    ));
    let state = std::thread::scope(|scope| {
        // The main executable is on nearly every thread's stack, but the
        // walk usually meets it only after the C library (threads stop in
        // system calls): loading its symbols on the other CPU meanwhile
        // takes that work off the walk's path.
        if let Some(main) = modules.main_module() {
            scope.spawn(|| provider.prepare(main.base_address()));
        }
        runtime.block_on(minidump_processor::process_minidump(&dump, &provider))
    })
    .map_err(|e| SymbolicateError::Process { path: path.to_owned(), reason: e.to_string() })?;
    let report = provider.into_report();
    // minidump-writer keeps `si_code` in the exception record's flags.
    let signal_code =
        dump.get_stream::<minidump::MinidumpException>().ok().map(|e| e.raw.exception_record.exception_flags as i32);
    Ok(convert::to_symbolicated(&state, &facts, &report, signal_code))
}

/// `(cache dir, download dir inside it, temporary cache to delete)` when
/// symbol servers are configured. Downloads land in a directory inside the
/// cache so that breakpad-symbols' final rename stays on one filesystem.
type HttpDirs = (PathBuf, tempfile::TempDir, Option<tempfile::TempDir>);

fn http_dirs(path: &Path, opts: &SymbolOptions) -> Result<Option<HttpDirs>, SymbolicateError> {
    if opts.symbol_urls.is_empty() {
        return Ok(None);
    }
    let cache_error = |source| SymbolicateError::Cache { path: path.to_owned(), source };
    let (cache, guard) = match &opts.cache_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(cache_error)?;
            (dir.clone(), None)
        }
        None => {
            let temporary = tempfile::Builder::new().prefix("symbolicate-cache-").tempdir().map_err(cache_error)?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };
    let tmp = tempfile::Builder::new().prefix(".download-").tempdir_in(&cache).map_err(cache_error)?;
    Ok(Some((cache, tmp, guard)))
}
