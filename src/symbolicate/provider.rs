//! The one [`SymbolProvider`] minidump-processor walks the stacks with.
//!
//! minidump-processor asks a provider two things per frame: *unwind* this
//! frame (`walk_frame`) and *name* this address (`fill_symbol`, also used by
//! the stack scanner to test whether a candidate return address lies in a
//! known function). Stock providers get both wrong for a crash supervisor:
//!
//! - `DebugInfoSymbolProvider` parses the symbols of every mapped module
//!   before the first frame is walked, and opens the path recorded in the
//!   dump without checking it is still the same file.
//! - `MultiSymbolProvider` lets *every* source write into the frame; two
//!   sources that both know the inlining at an address each push their
//!   inline frames, so they appear twice.
//!
//! So this provider:
//!
//! - unwinds with the debuginfo provider's framehop unwinder (built with
//!   symbols disabled) over a module list that holds only files whose
//!   identifier was verified ([`super::identity`]), rewritten to the path of
//!   the verified file (a preserved copy if the original was replaced), and
//!   starting where the file's first segment is mapped ([`super::layout`]:
//!   a file the dump records as several modules is one module here). Its
//!   setup maps each file and reads its section headers only; the unwind
//!   tables are read on demand. Only for x86_64 and arm64: for other CPUs
//!   that provider panics with `unimplemented!`. If framehop cannot unwind a
//!   frame, `STACK CFI` from Breakpad `.sym` files is tried.
//! - loads symbols lazily, per file, the first time an address in it is
//!   asked for: the modules on the stacks (and the few the stack scanner
//!   probes), never the others ([`super::module_symbols`]). A load happens
//!   once even when several threads' walks ask concurrently. DWARF frames
//!   are wholesym's (minidump-stackwalk's source), names are true ones
//!   ([`super::symbol_list`]), and only what the addresses asked about need
//!   is read ([`super::elf_symbols`]); wholesym itself still reads split
//!   DWARF.
//! - asks the sources in order (debuginfo, local `.sym` directories, symbol
//!   servers) into a scratch frame and copies exactly one answer into the
//!   real frame: the first with a name and a source line, else the first
//!   with a name, else a placeholder name. Placeholders (`fun_<hex>`,
//!   synthesized, as wholesym does, from `.eh_frame` for stripped code) are still
//!   given to the frame so the scanner judges addresses exactly as
//!   minidump-stackwalk does, but they are not counted as symbolicated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use minidump::system_info::Cpu;
use minidump::{MinidumpModule, MinidumpModuleList, MinidumpSystemInfo, Module};
use minidump_unwind::debuginfo::DebugInfoSymbolProvider;
use minidump_unwind::{FileError, FileKind, FillSymbolError, FrameSymbolizer, FrameWalker, SymbolProvider, Symbolizer};
use wholesym::debugid::DebugId;

use super::identity::{self, Located};
use super::model::SymbolSource;
use super::module_symbols::{ModuleSymbols, SymbolStore, Symbolized};

/// What the provider needs to know about one module of the dump.
pub(crate) struct ModuleFacts {
    /// Where the dump's record of the module starts.
    pub base: u64,
    /// Where the file's first segment is mapped: what its symbols'
    /// addresses are relative to ([`super::layout`]). Usually `base`.
    pub image_base: u64,
    /// Identifier recorded in the dump (build-id or text hash).
    pub identifier: Option<Vec<u8>>,
    pub debug_id: Option<DebugId>,
    pub located: Located,
}

/// The modules the unwinder reads, each at the file it was verified as.
/// The records of one file that share an image base become one module
/// that starts at that base (the unwinder takes a module's start for the
/// address its first segment is mapped at), unless that would overlap
/// another file's module; those are left as recorded.
fn unwinder_modules(modules: &MinidumpModuleList, verified: &HashMap<u64, &ModuleFacts>) -> Vec<MinidumpModule> {
    // (image base, end, the records), per file and image base.
    let mut groups: Vec<(u64, u64, Vec<MinidumpModule>)> = Vec::new();
    for m in modules.by_addr() {
        let Some(facts) = verified.get(&m.base_address()) else { continue };
        let Some(file) = facts.located.file.as_ref() else { continue };
        let mut m = m.clone();
        // For ELF the debug file *is* the code file (`name`), so this
        // points both at the verified file.
        m.name = file.to_string_lossy().into_owned();
        let end = m.base_address().saturating_add(m.size());
        match groups.iter_mut().find(|(base, _, records)| records[0].name == m.name && *base == facts.image_base) {
            Some((_, group_end, records)) => {
                *group_end = (*group_end).max(end);
                records.push(m);
            }
            None => groups.push((facts.image_base, end, vec![m])),
        }
    }
    let mut out = Vec::new();
    for (i, (image_base, end, records)) in groups.iter().enumerate() {
        let first = &records[0];
        // Against the other groups, as recorded and as they would be
        // merged.
        let overlaps = |start: u64, stop: u64| start < *end && *image_base < stop;
        let clashes = groups.iter().enumerate().filter(|(j, _)| *j != i).any(|(_, (base, stop, others))| {
            overlaps(*base, *stop)
                || others.iter().any(|o| overlaps(o.base_address(), o.base_address().saturating_add(o.size())))
        });
        if clashes || *image_base > first.base_address() || u32::try_from(end - image_base).is_err() {
            out.extend(records.iter().cloned());
        } else {
            let mut merged = first.clone();
            merged.raw.base_of_image = *image_base;
            merged.raw.size_of_image = (end - image_base) as u32;
            out.push(merged);
        }
    }
    out
}

/// True for the names wholesym makes up for functions it has no symbol for.
pub(crate) fn is_placeholder(name: &str) -> bool {
    name.strip_prefix("fun_").is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How good one source's answer for an address is (ordered worst to best).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Quality {
    Placeholder,
    NameOnly,
    WithLine,
}

/// One source's answer, recorded instead of written into the frame so that
/// only the chosen answer ever reaches it.
#[derive(Debug, Default)]
struct Recorded {
    instruction: u64,
    function: Option<(String, u64, u32)>,
    /// The raw symbol name, when the source knows it.
    symbol: Option<String>,
    source: Option<(String, u32, u64)>,
    /// Outermost first, as sources report them.
    inlines: Vec<(String, Option<String>, Option<u32>)>,
}

impl Recorded {
    fn new(instruction: u64) -> Self {
        Recorded { instruction, ..Default::default() }
    }

    fn quality(&self) -> Option<Quality> {
        let (name, _, _) = self.function.as_ref()?;
        Some(if name.is_empty() {
            return None;
        } else if is_placeholder(name) {
            Quality::Placeholder
        } else if self.source.is_some() {
            Quality::WithLine
        } else {
            Quality::NameOnly
        })
    }

    fn apply(self, frame: &mut (dyn FrameSymbolizer + Send)) {
        if let Some((name, base, parameter_size)) = &self.function {
            frame.set_function(name, *base, *parameter_size);
        }
        if let Some((file, line, base)) = &self.source {
            frame.set_source_file(file, *line, *base);
        }
        for (name, file, line) in &self.inlines {
            frame.add_inline_frame(name, file.as_deref(), *line);
        }
    }
}

impl FrameSymbolizer for Recorded {
    fn get_instruction(&self) -> u64 {
        self.instruction
    }
    fn set_function(&mut self, name: &str, base: u64, parameter_size: u32) {
        self.function = Some((name.to_owned(), base, parameter_size));
    }
    fn set_source_file(&mut self, file: &str, line: u32, base: u64) {
        self.source = Some((file.to_owned(), line, base));
    }
    fn add_inline_frame(&mut self, name: &str, file: Option<&str>, line: Option<u32>) {
        self.inlines.push((name.to_owned(), file.map(str::to_owned), line));
    }
}

/// The frame record for one module's answer, reported the way
/// minidump-unwind's debuginfo provider reports wholesym's (so frames match
/// minidump-stackwalk's): the outermost function with its line, then the
/// inlined calls outermost first.
fn record(instruction: u64, symbolized: Symbolized) -> Recorded {
    let Symbolized { function_base, name, symbol, frames } = symbolized;
    let mut recorded = Recorded::new(instruction);
    recorded.function = Some((name, function_base, 0));
    recorded.symbol = symbol;
    if let Some(frames) = frames {
        let mut outer_first = frames.into_iter().rev();
        if let Some(outer) = outer_first.next()
            && let Some(path) = outer.file
        {
            recorded.source = Some((path, outer.line.unwrap_or(0), function_base));
        }
        for inline in outer_first {
            recorded.inlines.push((inline.function.unwrap_or_default(), inline.file, inline.line));
        }
    }
    recorded
}

/// Per (module base, instruction) with a real name: the source that named
/// it and the raw symbol name, when known.
pub(crate) type Served = HashMap<(u64, u64), (SymbolSource, Option<String>)>;

/// The provider. Lives for one `symbolicate` call.
pub(crate) struct Provider<'s> {
    unwinder: Option<DebugInfoSymbolProvider>,
    /// Whether the dump is of an x86_64 process (signal frames are read
    /// only there).
    x86_64: bool,
    /// By module record base: the image base and the file's symbols.
    debuginfo: HashMap<u64, (u64, usize)>,
    /// One per verified file (a file recorded as several modules shares).
    symbols: Vec<ModuleSymbols<'s>>,
    debug_dirs: Vec<PathBuf>,
    /// Breakpad symbolizers in the order they are asked.
    breakpad: Vec<(Symbolizer, SymbolSource)>,
    /// Which source named each (module base, instruction) that got a real
    /// name, and the raw symbol name when known. Scanner probes land here
    /// too; only real frames are read back.
    served: Mutex<Served>,
}

/// What the provider learned, for the report.
pub(crate) struct ProviderReport {
    /// `SymbolSource::Debuginfo` for names from the module's own files.
    pub served: Served,
    /// What the files of each module whose symbols were read hold.
    pub found: HashMap<u64, SymbolSource>,
    /// Modules whose debug info was looked for and not found, with why.
    pub load_errors: HashMap<u64, String>,
}

impl<'s> Provider<'s> {
    /// `store` holds the files the symbols are read from: it must outlive
    /// the provider.
    pub(crate) async fn new(
        system_info: Option<&MinidumpSystemInfo>,
        modules: &MinidumpModuleList,
        facts: &[ModuleFacts],
        store: &'s SymbolStore,
        debug_dirs: Vec<PathBuf>,
        breakpad: Vec<(Symbolizer, SymbolSource)>,
    ) -> Provider<'s> {
        let verified: HashMap<u64, &ModuleFacts> =
            facts.iter().filter(|f| f.located.file.is_some()).map(|f| (f.base, f)).collect();

        let unwinder = match system_info {
            Some(info) if matches!(info.cpu, Cpu::X86_64 | Cpu::Arm64) => Some(
                DebugInfoSymbolProvider::builder()
                    .symbols(false)
                    .build(info, &MinidumpModuleList::from_modules(unwinder_modules(modules, &verified)))
                    .await,
            ),
            _ => None,
        };

        let mut symbols: Vec<ModuleSymbols<'s>> = Vec::new();
        let mut debuginfo = HashMap::new();
        for f in verified.values() {
            let existing = symbols.iter().position(|m| Some(&m.file) == f.located.file.as_ref());
            let index = match existing {
                Some(index) => index,
                None => {
                    let Some(new) = ModuleSymbols::new(f, store) else { continue };
                    symbols.push(new);
                    symbols.len() - 1
                }
            };
            debuginfo.insert(f.base, (f.image_base, index));
        }

        let x86_64 = system_info.is_some_and(|info| info.cpu == Cpu::X86_64);
        Provider { unwinder, x86_64, debuginfo, symbols, debug_dirs, breakpad, served: Mutex::new(HashMap::new()) }
    }

    /// Loads the debuginfo symbols of the module at `base` (and readies its
    /// DWARF) ahead of the walk; what the walk then asks for is ready, or
    /// waits for this to finish. Loading is the same either way.
    pub(crate) fn prepare(&self, base: u64) {
        if let Some(symbols) = self.module_symbols(base) {
            symbols.1.prepare(&self.debug_dirs);
        }
    }

    /// The image base and symbols of the module recorded at `base`.
    fn module_symbols(&self, base: u64) -> Option<(u64, &ModuleSymbols<'s>)> {
        let &(image_base, index) = self.debuginfo.get(&base)?;
        Some((image_base, self.symbols.get(index)?))
    }

    pub(crate) fn into_report(self) -> ProviderReport {
        let load_errors = self
            .debuginfo
            .keys()
            .filter_map(|base| Some((*base, self.module_symbols(*base)?.1.load_error()?.to_owned())))
            .collect();
        let found =
            self.debuginfo.keys().filter_map(|base| Some((*base, self.module_symbols(*base)?.1.found()?))).collect();
        ProviderReport {
            served: self.served.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()),
            found,
            load_errors,
        }
    }
}

/// Keeps `recorded` if it is strictly better than the best so far: among
/// equals, the earlier source wins.
fn consider(best: &mut Option<(Quality, Recorded, SymbolSource)>, recorded: Recorded, source: SymbolSource) {
    if let Some(quality) = recorded.quality()
        && best.as_ref().is_none_or(|(q, _, _)| quality > *q)
    {
        *best = Some((quality, recorded, source));
    }
}

#[async_trait]
impl SymbolProvider for Provider<'_> {
    async fn fill_symbol(
        &self,
        module: &(dyn Module + Sync),
        frame: &mut (dyn FrameSymbolizer + Send),
    ) -> Result<(), FillSymbolError> {
        let instruction = frame.get_instruction();
        let base = module.base_address();
        let mut had_symbols = false;
        let mut best: Option<(Quality, Recorded, SymbolSource)> = None;

        if let Some((image_base, symbols)) = self.module_symbols(base)
            && let Ok(answer) = symbols.lookup(&self.debug_dirs, image_base, instruction).await
        {
            had_symbols = true;
            if let Some(symbolized) = answer {
                consider(&mut best, record(instruction, symbolized), SymbolSource::Debuginfo);
            }
        }
        for (symbolizer, source) in &self.breakpad {
            if matches!(best, Some((Quality::WithLine, _, _))) {
                break;
            }
            let mut recorded = Recorded::new(instruction);
            if symbolizer.fill_symbol(module, &mut recorded).await.is_ok() {
                had_symbols = true;
                consider(&mut best, recorded, *source);
            }
        }

        if let Some((quality, mut recorded, source)) = best {
            let symbol = recorded.symbol.take();
            recorded.apply(frame);
            if quality > Quality::Placeholder {
                self.served
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert((base, instruction), (source, symbol));
            }
        }
        // Err means "no symbols for this module at all": the stack scanner
        // then accepts any address in it rather than rejecting everything.
        if had_symbols { Ok(()) } else { Err(FillSymbolError {}) }
    }

    async fn walk_frame(&self, module: &(dyn Module + Sync), walker: &mut (dyn FrameWalker + Send)) -> Option<()> {
        if self.x86_64
            && let Some((image_base, symbols)) = self.module_symbols(module.base_address())
            && super::sigframe::unwind(&symbols.file, image_base, walker).is_some()
        {
            return Some(());
        }
        if let Some(unwinder) = &self.unwinder
            && unwinder.walk_frame(module, walker).await.is_some()
        {
            return Some(());
        }
        for (symbolizer, _) in &self.breakpad {
            if symbolizer.walk_frame(module, walker).await.is_some() {
                return Some(());
            }
        }
        None
    }

    async fn get_file_path(&self, module: &(dyn Module + Sync), file_kind: FileKind) -> Result<PathBuf, FileError> {
        let lazy = self.module_symbols(module.base_address()).map(|(_, symbols)| symbols);
        match file_kind {
            FileKind::Binary => lazy.map(|l| l.file.clone()).ok_or(FileError::NotFound),
            FileKind::ExtraDebugInfo => {
                lazy.and_then(|l| identity::find_debug_file(&self.debug_dirs, &l.identifier)).ok_or(FileError::NotFound)
            }
            FileKind::BreakpadSym => {
                for (symbolizer, _) in &self.breakpad {
                    if let Ok(path) = symbolizer.get_file_path(module, file_kind).await {
                        return Ok(path);
                    }
                }
                Err(FileError::NotFound)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert!(is_placeholder("fun_1a2b"));
        assert!(!is_placeholder("fun_"));
        assert!(!is_placeholder("fun_main"));
        assert!(!is_placeholder("main"));
    }

    #[test]
    fn best_answer_ranks_lines_over_names_over_placeholders() {
        let mut r = Recorded::new(1);
        assert_eq!(r.quality(), None);
        r.set_function("fun_10", 0x10, 0);
        assert_eq!(r.quality(), Some(Quality::Placeholder));
        r.set_function("main", 0x10, 0);
        assert_eq!(r.quality(), Some(Quality::NameOnly));
        r.set_source_file("a.c", 3, 0x10);
        assert_eq!(r.quality(), Some(Quality::WithLine));
        assert!(Quality::WithLine > Quality::NameOnly && Quality::NameOnly > Quality::Placeholder);
    }
}
