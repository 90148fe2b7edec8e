//! One module's debuginfo symbols, loaded the first time an address in it
//! is asked for: through [`super::elf_symbols`] (mapped files, only what
//! each address needs), or through wholesym for the shapes of debug
//! information that module does not read.
//!
//! The files a module's symbols borrow from live in a [`SymbolStore`] that
//! the caller creates before the provider and drops after it: the parsed
//! symbols ([`ElfSymbols`]) point into those mappings without copying them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;
use wholesym::debugid::DebugId;
use wholesym::{CodeId, ElfBuildId, LibraryInfo, LookupAddress, SymbolManager, SymbolManagerConfig, SymbolMap};

use super::dwarf::{Buffers, FrameInfo};
use super::elf_symbols::{self, Answer, ElfSymbols, Named, Opened};
use super::model::SymbolSource;
use super::provider::ModuleFacts;

/// The opened symbol files of every verified module (by verified file: a
/// file mapped as several modules is opened once), each on first use.
pub(crate) struct SymbolStore {
    slots: HashMap<PathBuf, OnceLock<Result<Opened, String>>>,
    /// Partial copies of `.debug_info` made by lookups.
    buffers: Buffers,
}

impl SymbolStore {
    pub(crate) fn new(facts: &[ModuleFacts]) -> SymbolStore {
        let slots = facts.iter().filter_map(|f| Some((f.located.file.clone()?, OnceLock::new()))).collect();
        SymbolStore { slots, buffers: Buffers::new() }
    }
}

/// What a module's symbols say about one address.
pub(crate) struct Symbolized {
    /// Absolute address of the function's start.
    pub function_base: u64,
    pub name: String,
    /// The raw symbol name; `None` for a placeholder or a name wholesym
    /// gave (it gives only demangled ones).
    pub symbol: Option<String>,
    /// DWARF frames, innermost first.
    pub frames: Option<Vec<FrameInfo>>,
}

/// A module's symbols, loaded on first use.
pub(crate) struct ModuleSymbols<'s> {
    /// The verified binary (or preserved copy).
    pub file: PathBuf,
    pub identifier: Vec<u8>,
    debug_id: Option<DebugId>,
    opened: &'s OnceLock<Result<Opened, String>>,
    buffers: &'s Buffers,
    /// `Err` keeps the reason for the module's `problem`.
    symbols: OnceLock<Result<ElfSymbols<'s>, String>>,
    /// Set when the files turned out to need wholesym (also mid-way: a
    /// split-DWARF unit is only found at lookup).
    use_wholesym: AtomicBool,
    /// The mutex is there because wholesym's `SymbolMap` is `Send` but not
    /// `Sync`.
    wholesym: OnceCell<Result<tokio::sync::Mutex<SymbolMap>, String>>,
}

impl<'s> ModuleSymbols<'s> {
    /// `None` for a module without a verified file or identifier.
    pub(crate) fn new(facts: &ModuleFacts, store: &'s SymbolStore) -> Option<ModuleSymbols<'s>> {
        Some(ModuleSymbols {
            file: facts.located.file.clone()?,
            identifier: facts.identifier.clone()?,
            debug_id: facts.debug_id,
            opened: store.slots.get(facts.located.file.as_ref()?)?,
            buffers: &store.buffers,
            symbols: OnceLock::new(),
            use_wholesym: AtomicBool::new(false),
            wholesym: OnceCell::new(),
        })
    }

    /// Why this module's symbols could not be loaded, if they were tried.
    pub(crate) fn load_error(&self) -> Option<&str> {
        if self.use_wholesym.load(Ordering::Relaxed) {
            return self.wholesym.get()?.as_ref().err().map(String::as_str);
        }
        match self.opened.get()? {
            Err(e) => Some(e),
            Ok(_) => self.symbols.get()?.as_ref().err().map(String::as_str),
        }
    }

    /// What this module's files were found to hold, once they were read.
    pub(crate) fn found(&self) -> Option<SymbolSource> {
        if self.use_wholesym.load(Ordering::Relaxed) {
            // wholesym reads only split DWARF here.
            return Some(match self.wholesym.get()? {
                Ok(_) => SymbolSource::Dwarf,
                Err(_) => SymbolSource::None,
            });
        }
        match self.opened.get()? {
            Err(_) => Some(SymbolSource::None),
            Ok(_) => Some(self.symbols.get()?.as_ref().map_or(SymbolSource::None, ElfSymbols::found)),
        }
    }

    /// Looks `instruction` up; `base` is where the file's first segment is
    /// mapped ([`super::layout`]). `Err(())` means this module has no
    /// symbols at all (they could not be loaded); `Ok(None)` that no
    /// function contains the address.
    pub(crate) async fn lookup(
        &self,
        debug_dirs: &[PathBuf],
        base: u64,
        instruction: u64,
    ) -> Result<Option<Symbolized>, ()> {
        if !self.use_wholesym.load(Ordering::Relaxed) {
            match self.elf_symbols(debug_dirs) {
                Err(()) => return Err(()),
                Ok(None) => self.use_wholesym.store(true, Ordering::Relaxed),
                Ok(Some(symbols)) => {
                    let Some(relative) = relative(base, instruction) else {
                        return Ok(None);
                    };
                    match symbols.lookup(relative) {
                        Answer::Nothing => return Ok(None),
                        Answer::Found { start, name, symbol, frames } => {
                            return Ok(Some(Symbolized {
                                function_base: base + u64::from(start),
                                name,
                                symbol,
                                frames,
                            }));
                        }
                        Answer::SplitDwarf => {
                            tracing::debug!(file = %self.file.display(), "split DWARF: symbols read by wholesym");
                            self.use_wholesym.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        let map = self.wholesym(debug_dirs).await.ok_or(())?;
        let Some(relative) = relative(base, instruction) else {
            return Ok(None);
        };
        let Some(info) = map.lock().await.lookup(LookupAddress::Relative(relative)).await else {
            return Ok(None);
        };
        let frames = info.frames.map(|frames| {
            frames
                .into_iter()
                .map(|f| FrameInfo {
                    function: f.function,
                    file: f.file_path.map(|p| p.raw_path().to_owned()),
                    line: f.line_number,
                })
                .collect()
        });
        // The symbol tables were read (the DWARF is split): their name is
        // the true one, wholesym's may have lost a leading underscore.
        if let Some(Ok(symbols)) = self.symbols.get()
            && let Some(Named { start, name, symbol }) = symbols.name_at(relative)
        {
            return Ok(Some(Symbolized { function_base: base + u64::from(start), name, symbol, frames }));
        }
        Ok(Some(Symbolized {
            function_base: base + u64::from(info.symbol.address),
            name: info.symbol.name,
            symbol: None,
            frames,
        }))
    }

    /// Loads the symbols the lean way (nothing for modules wholesym reads:
    /// that load is async and stays with the walk).
    pub(crate) fn prepare(&self, debug_dirs: &[PathBuf]) {
        if let Ok(Some(symbols)) = self.elf_symbols(debug_dirs) {
            symbols.prepare();
        }
    }

    /// `Ok(None)` when wholesym must read this module.
    fn elf_symbols(&self, debug_dirs: &[PathBuf]) -> Result<Option<&ElfSymbols<'s>>, ()> {
        let opened = self.opened.get_or_init(|| elf_symbols::open(&self.file, &self.identifier, debug_dirs));
        match opened {
            Err(_) => Err(()),
            Ok(Opened::Unsupported(why)) => {
                tracing::debug!(file = %self.file.display(), "symbols read by wholesym: {why}");
                Ok(None)
            }
            Ok(Opened::Data(data)) => {
                self.symbols.get_or_init(|| ElfSymbols::new(data, self.buffers)).as_ref().map(Some).map_err(|_| ())
            }
        }
    }

    async fn wholesym(&self, debug_dirs: &[PathBuf]) -> Option<&tokio::sync::Mutex<SymbolMap>> {
        self.wholesym
            .get_or_init(|| async { self.load_wholesym(debug_dirs).await.map(tokio::sync::Mutex::new) })
            .await
            .as_ref()
            .ok()
    }

    async fn load_wholesym(&self, debug_dirs: &[PathBuf]) -> Result<SymbolMap, String> {
        // A separate debug file found by build-id is checked by identifier
        // like the binary; wholesym then still follows `.gnu_debuglink`
        // (CRC-checked) from the binary when there is none.
        let debug_file = super::identity::find_debug_file(debug_dirs, &self.identifier);
        let path = debug_file.as_deref().unwrap_or(&self.file);
        // One manager per module: it holds nothing but this module's
        // location, and the loaded map keeps what it needs of it alive.
        let mut manager = SymbolManager::with_config(SymbolManagerConfig::new());
        let name = file_name(path);
        let result = match (self.debug_id, &name) {
            (Some(debug_id), Some(debug_name)) => {
                // Looking the map up by the dump's debug id makes wholesym
                // reject any candidate file that belongs to another build;
                // the known library tells it where this build's files are.
                let info = LibraryInfo {
                    debug_name: name.clone(),
                    debug_id: Some(debug_id),
                    debug_path: Some(path.to_string_lossy().into_owned()),
                    name: name.clone(),
                    code_id: Some(CodeId::ElfBuildId(ElfBuildId::from_bytes(&self.identifier))),
                    path: Some(path.to_string_lossy().into_owned()),
                    arch: None,
                };
                manager.add_known_library(info);
                manager.load_symbol_map(debug_name, debug_id).await
            }
            // The file was verified by identifier already, so its own
            // identity is the dump's.
            _ => manager.load_symbol_map_for_binary_at_path(path, None).await,
        };
        result.map_err(|e| format!("no debug info in {}: {e}", path.display()))
    }
}

fn relative(base: u64, instruction: u64) -> Option<u32> {
    u32::try_from(instruction.checked_sub(base)?).ok()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}
