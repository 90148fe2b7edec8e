//! Bad input: never a panic, always an error that names the file (or, for
//! a damaged but still readable dump, a partial result).

#[path = "symbolicate_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crashwatch::symbolicate::{SymbolOptions, SymbolicateError, symbolicate};

/// One real dump for the whole file (and the crash's scratch dir with it).
fn real_dump() -> &'static (tempfile::TempDir, PathBuf) {
    static DUMP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DUMP.get_or_init(|| {
        let dir = common::scratch();
        let exe = dir.path().join("nested");
        common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer"]);
        let crash = common::crash(&exe, &[]);
        let dump = dir.path().join("real.dmp");
        std::fs::copy(crash.dump(), &dump).unwrap();
        (dir, dump)
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn expect_error(path: &Path) -> SymbolicateError {
    let err = symbolicate(path, &SymbolOptions::default()).expect_err("must fail");
    assert!(!matches!(err, SymbolicateError::Panicked { .. }), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    err
}

#[test]
fn not_a_minidump() {
    let dir = common::scratch();
    let err = expect_error(&write(dir.path(), "notes.txt", b"hello, this is not a dump\n"));
    assert!(matches!(err, SymbolicateError::NotAMinidump { .. }), "{err}");
    let elf = std::env::current_exe().unwrap();
    assert!(matches!(expect_error(&elf), SymbolicateError::NotAMinidump { .. }));
    let err = expect_error(&write(dir.path(), "empty.dmp", b""));
    assert!(matches!(err, SymbolicateError::NotAMinidump { .. }), "{err}");
    assert!(matches!(expect_error(dir.path()), SymbolicateError::NotAMinidump { .. }));
    let missing = dir.path().join("missing.dmp");
    assert!(matches!(expect_error(&missing), SymbolicateError::Read { .. }));
}

#[test]
fn truncated_dumps() {
    let (_, dump) = real_dump();
    let bytes = std::fs::read(dump).unwrap();
    let dir = common::scratch();
    // Cut inside the header and the stream directory: nothing usable.
    for len in [4, 31, 32, 64, 100] {
        let path = write(dir.path(), &format!("cut{len}.dmp"), &bytes[..len]);
        expect_error(&path);
    }
    // Cut later: streams past the end are missing; either an error or a
    // partial result, never a panic.
    for len in [bytes.len() / 8, bytes.len() / 4, bytes.len() / 2, bytes.len() - 1] {
        let path = write(dir.path(), &format!("cut{len}.dmp"), &bytes[..len]);
        match symbolicate(&path, &SymbolOptions::default()) {
            Ok(s) => assert!(s.threads.len() <= 1),
            Err(e) => assert!(!matches!(e, SymbolicateError::Panicked { .. }), "{e}"),
        }
    }
}

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn randomly_damaged_dumps_never_panic() {
    let (_, dump) = real_dump();
    let original = std::fs::read(dump).unwrap();
    let dir = common::scratch();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut errors, mut caught) = (0, 0, Vec::new());
    for round in 0..200 {
        let mut bytes = original.clone();
        // Mostly the header, directory and stream headers, where damage
        // changes how everything else is read.
        for _ in 0..1 + rng.next() % 6 {
            let limit = if rng.next().is_multiple_of(2) { 1024 } else { bytes.len() };
            let at = (rng.next() as usize) % limit.min(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        let path = write(dir.path(), &format!("damaged{round}.dmp"), &bytes);
        match symbolicate(&path, &SymbolOptions::default()) {
            Ok(_) => ok += 1,
            Err(SymbolicateError::Panicked { message, .. }) => caught.push((round, message)),
            Err(_) => errors += 1,
        }
    }
    eprintln!("damaged dumps: {ok} ok, {errors} errors, {} panics caught", caught.len());
    assert!(caught.is_empty(), "dependencies panicked (caught): {caught:?}");
}

/// Rewrites the dump's `processor_architecture` (first u16 of the system
/// info stream, stream type 7).
fn with_cpu(bytes: &[u8], arch: u16) -> Vec<u8> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (count, directory) = (u32_at(8), u32_at(12));
    let entry = (0..count).map(|i| directory + 12 * i).find(|&e| u32_at(e) == 7).expect("system info stream");
    let mut out = bytes.to_vec();
    let rva = u32_at(entry + 8);
    out[rva..rva + 2].copy_from_slice(&arch.to_le_bytes());
    out
}

#[test]
fn other_cpus_do_not_panic() {
    let (_, dump) = real_dump();
    let bytes = std::fs::read(dump).unwrap();
    let dir = common::scratch();
    // x86, MIPS, PPC, ARM, ARM64, SPARC, MIPS64, unknown. For x86_64 dumps
    // relabelled this way the thread contexts no longer parse; for arm64 the
    // debuginfo unwinder is built and must simply not find anything.
    for arch in [0u16, 1, 3, 5, 12, 0x8001, 0x8004, 0xfff0] {
        let path = write(dir.path(), &format!("cpu{arch:x}.dmp"), &with_cpu(&bytes, arch));
        match symbolicate(&path, &SymbolOptions::default()) {
            Ok(s) => assert_ne!(s.cpu, "amd64", "cpu {arch:#x}"),
            Err(e) => panic!("cpu {arch:#x}: {e}"),
        }
    }
}

#[test]
fn bad_symbol_url_is_an_error() {
    let (_, dump) = real_dump();
    let opts = SymbolOptions { symbol_urls: vec!["ftp://example.invalid/".into()], ..SymbolOptions::default() };
    let err = symbolicate(dump, &opts).unwrap_err();
    assert!(matches!(err, SymbolicateError::BadSymbolUrl { .. }), "{err}");
}
