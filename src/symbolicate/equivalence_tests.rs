//! The lean lookup ([`super::elf_symbols`]) must answer as wholesym does
//! (what minidump-stackwalk prints) wherever wholesym is right: the stack
//! scanner's judgement of candidate addresses depends on it. These tests
//! ask both about thousands of addresses of real files and compare every
//! field (function start and name, and each DWARF frame's function, file
//! and line), allowing only the two places where wholesym is wrong, and
//! nothing else:
//!
//! - it strips the leading `_` of C names (`__libc_start_call_main` is
//!   `_libc_start_call_main` there);
//! - among aliases (symbols at one address) it takes the first in the
//!   table, here the global one is preferred (`abort` over `__GI_abort`),
//!   and a symbol version is not part of the name shown;
//! - it names an address past the end of a symbol after that symbol; here
//!   such an address gets a placeholder at the same start (a function for
//!   the scanner, no name for the report);
//! - it lets an `.eh_frame` entry that starts inside a symbol (a function
//!   in several parts) end the symbol: the rest gets a placeholder there
//!   and the symbol's name here.
//!
//! (It also places `.eh_frame` entries at their absolute addresses, which
//! is wrong for a non-PIE executable; the files compared here are PIE.)
//!
//! That the names given are the true ones is checked against binutils in
//! `tests/symbolicate_oracle.rs`.
//!
//! `CRASHWATCH_SYMBOL_EQUIVALENCE=/path/a:/path/b` adds files of one's own
//! (a large Rust binary with debug info, say) to
//! `same_answers_for_extra_files`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wholesym::samply_symbols::object::{self, Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use wholesym::{LookupAddress, SymbolManager, SymbolManagerConfig};

use super::dwarf::Buffers;
use super::elf_symbols::{self, Answer, ElfSymbols, Opened};
use super::identity;

/// At most this many addresses per file (spread over all its functions).
const PROBES: usize = 3000;

type Frames = Option<Vec<(Option<String>, Option<String>, Option<u32>)>>;

/// Whether `theirs` is what samply-symbols' demangler makes of a C name
/// that [`super::demangle`] keeps as `ours`.
fn same_name(ours: &str, theirs: &str) -> bool {
    ours == theirs || (!ours.starts_with("_Z") && !ours.starts_with("_R") && ours.strip_prefix('_') == Some(theirs))
}

fn same_frames(ours: &Frames, theirs: &Frames) -> bool {
    match (ours, theirs) {
        (None, None) => true,
        (Some(ours), Some(theirs)) => {
            ours.len() == theirs.len()
                && ours.iter().zip(theirs).all(|((f, file, line), (g, their_file, their_line))| {
                    let names = match (f, g) {
                        (Some(f), Some(g)) => same_name(f, g),
                        (f, g) => f == g,
                    };
                    names && file == their_file && line == their_line
                })
        }
        _ => false,
    }
}

/// Compares the two lookups on `binary`; returns how many addresses were
/// compared.
fn compare(binary: &Path) -> usize {
    let identifier = identity::file_identifier(binary).unwrap();
    let buffers = Buffers::new();
    let opened = elf_symbols::open(binary, &identifier, &[PathBuf::from(super::identity::SYSTEM_DEBUG_DIR)]).unwrap();
    let Opened::Data(data) = opened else {
        panic!("{} is read by wholesym, not by the lean lookup", binary.display());
    };
    let ours = ElfSymbols::new(&data, &buffers).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let manager = SymbolManager::with_config(SymbolManagerConfig::new());
    let theirs = runtime.block_on(manager.load_symbol_map_for_binary_at_path(data.path(), None)).unwrap();

    let probes = probes(data.path());
    let alias_names = symbol_names(data.path());
    let mut differences = Vec::new();
    for &relative in &probes {
        let expected = runtime.block_on(theirs.lookup(LookupAddress::Relative(relative))).map(|info| {
            let frames: Frames = info.frames.map(|frames| {
                frames
                    .into_iter()
                    .map(|f| (f.function, f.file_path.map(|p| p.raw_path().to_owned()), f.line_number))
                    .collect()
            });
            (info.symbol.address, info.symbol.name, frames)
        });
        let actual = match ours.lookup(relative) {
            Answer::Nothing => None,
            Answer::Found { start, name, frames, .. } => {
                let frames: Frames =
                    frames.map(|frames| frames.into_iter().map(|f| (f.function, f.file, f.line)).collect());
                Some((start, name, frames))
            }
            Answer::SplitDwarf => panic!("{}: unexpected split DWARF at {relative:#x}", binary.display()),
        };
        let agrees = match (&actual, &expected) {
            (None, None) => true,
            (Some((start, name, frames)), Some((their_start, their_name, their_frames))) => {
                let named = if super::provider::is_placeholder(name) {
                    // Past the end of wholesym's symbol, or in no symbol.
                    start == their_start
                } else if super::provider::is_placeholder(their_name) {
                    // A symbol holds the address, but wholesym lets an
                    // `.eh_frame` entry that starts inside it (a function
                    // split in parts) end it.
                    true
                } else {
                    start == their_start
                        && (same_name(name, their_name) || aliases(&alias_names, *start, name, their_name))
                };
                named && same_frames(frames, their_frames)
            }
            _ => false,
        };
        if !agrees {
            differences.push(format!("{relative:#x}:\n  wholesym {expected:?}\n  ours     {actual:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{}: {} of {} addresses differ, first ones:\n{}",
        data.path().display(),
        differences.len(),
        probes.len(),
        differences[..differences.len().min(std::env::var("SHOW").ok().and_then(|v| v.parse().ok()).unwrap_or(5))]
            .join("\n")
    );
    probes.len()
}

/// Every symbol name (raw, with any version) by relative address.
fn symbol_names(path: &Path) -> std::collections::HashMap<u32, Vec<String>> {
    let bytes = std::fs::read(path).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let base = wholesym::samply_symbols::relative_address_base(&file);
    let mut names: std::collections::HashMap<u32, Vec<String>> = std::collections::HashMap::new();
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
        if let (Ok(name), Some(address)) =
            (symbol.name(), symbol.address().checked_sub(base).and_then(|a| u32::try_from(a).ok()))
        {
            names.entry(address).or_default().push(name.to_owned());
        }
    }
    names
}

/// Whether `ours` and `theirs` are two aliases of the symbol at `start`:
/// `ours` as [`super::demangle`] shows one, `theirs` as samply-symbols does.
fn aliases(names: &std::collections::HashMap<u32, Vec<String>>, start: u32, ours: &str, theirs: &str) -> bool {
    let Some(at) = names.get(&start) else { return false };
    at.iter().any(|n| super::demangle::demangle(n.split('@').next().unwrap_or_default()) == ours)
        && at.iter().any(|n| wholesym::samply_symbols::demangle_any(n) == theirs)
}

/// Relative addresses at the start, middle and last byte of functions of
/// the symbol table, and just past them, evenly spread.
fn probes(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let base = wholesym::samply_symbols::relative_address_base(&file);
    let functions: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() >= base && s.size() > 0)
        .map(|s| (s.address() - base, s.size()))
        .collect();
    let step = (functions.len() * 4).div_ceil(PROBES).max(1);
    let mut probes: Vec<u32> = functions
        .iter()
        .step_by(step)
        .flat_map(|&(start, size)| [start, start + size / 2, start + size - 1, start + size])
        .filter_map(|address| u32::try_from(address).ok())
        .collect();
    // And a stride over the code, for stripped files and the gaps between
    // symbols (placeholders from `.eh_frame`, exports, nothing).
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let (start, size) = (section.address().saturating_sub(base), section.size());
        let stride = (size / 500).max(1);
        probes.extend((0..size).step_by(stride as usize).filter_map(|offset| u32::try_from(start + offset).ok()));
    }
    probes.sort_unstable();
    probes.dedup();
    probes
}

fn build(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/symbolicate").join(name)
}

#[test]
fn same_answers_for_c_programs() {
    let dir = tempfile::tempdir().unwrap();
    for (source, flags) in [("nested.c", "-O0"), ("inlined.c", "-O2")] {
        let exe = dir.path().join(source.trim_end_matches(".c"));
        build(Command::new("gcc").args(["-g", flags, "-Wl,--build-id", "-o"]).arg(&exe).arg(testdata(source)));
        assert!(compare(&exe) > 0);
    }
}

/// Release Rust code with several codegen units: ThinLTO inlines across
/// them, so functions' names are found through references into other
/// units, which the partial contexts must bring along.
#[test]
fn same_answers_for_optimised_rust() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("rust_crash");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    build(
        Command::new(rustc)
            .args(["--edition", "2021", "-g", "-C", "opt-level=3", "-C", "codegen-units=8", "-o"])
            .arg(&exe)
            .arg(testdata("rust_crash.rs")),
    );
    assert!(compare(&exe) > 0);
}

/// The C library, through its separate debug file (zlib-compressed DWARF
/// on Debian) when one is installed.
#[test]
fn same_answers_for_the_c_library() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|n| n.to_string_lossy().starts_with("libc.so")))
        .map(PathBuf::from)
        .expect("this test binary maps a libc");
    assert!(compare(&libc) > 0);
}

#[test]
fn same_answers_for_extra_files() {
    let Some(extra) = std::env::var_os("CRASHWATCH_SYMBOL_EQUIVALENCE") else {
        return;
    };
    for path in std::env::split_paths(&extra) {
        eprintln!("{}: {} addresses, same answers", path.display(), compare(&path));
    }
}
