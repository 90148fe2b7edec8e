//! Every function name crashwatch gives a frame, checked against binutils
//! on the same module and address: `nm` (which symbol's extent holds the
//! address), `addr2line -i` (the inlined calls DWARF records there) and
//! `c++filt` (the readable form of a mangled name). For C, C++, Rust, the C
//! library with its debug file, Node.js, and two stripped shapes: a binary
//! with only `.dynsym`, and one with MiniDebugInfo.
//!
//! Where the program was stripped, the oracle reads the unstripped file:
//! the names must be the true ones, not merely the ones a stripped file
//! would suggest (`addr2line` on a stripped file names every address after
//! the nearest exported symbol, which is the bug this guards against).

#[path = "symbolicate_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crashwatch::symbolicate::{Frame, Module, SymbolOptions, SymbolSource, Symbolicated, symbolicate};

/// `nm`'s function symbols of one file: `(address, size, raw name)`.
struct Symbols(Vec<(u64, Option<u64>, String)>);

impl Symbols {
    /// The `.symtab` and `.dynsym` function symbols of `files`.
    fn of(files: &[&Path]) -> Symbols {
        let mut all = Vec::new();
        for file in files {
            for dynamic in [false, true] {
                let mut args: Vec<&OsStr> = vec!["--defined-only".as_ref(), "-S".as_ref()];
                if dynamic {
                    args.push("-D".as_ref());
                }
                args.push(file.as_os_str());
                let out = Command::new("nm").args(&args).output().expect("nm (binutils) is needed");
                // "no symbols" is an error for nm; an empty table is fine.
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (address, size, kind, name) = match fields[..] {
                        [a, s, k, n] => (a, Some(s), k, n),
                        [a, k, n] => (a, None, k, n),
                        _ => continue,
                    };
                    // Text (local or global), weak, indirect functions.
                    if !matches!(kind, "t" | "T" | "w" | "W" | "i") {
                        continue;
                    }
                    let address = u64::from_str_radix(address, 16).unwrap();
                    let size = size.map(|s| u64::from_str_radix(s, 16).unwrap()).filter(|s| *s > 0);
                    // nm shows a dynamic symbol's version after its name
                    // (`abort@@GLIBC_2.2.5`); in `.symtab` a version is
                    // part of the name itself.
                    let name = if dynamic { name.split('@').next().unwrap() } else { name }.to_owned();
                    all.push((address, size, name));
                }
            }
        }
        Symbols(all)
    }

    /// The start and the names of the innermost symbols whose extent holds
    /// `address` (an unsized symbol holds only its own address).
    fn at(&self, address: u64) -> Option<(u64, Vec<&str>)> {
        let holds = |&&(start, size, _): &&(u64, Option<u64>, String)| match size {
            Some(size) => start <= address && address < start + size,
            None => start == address,
        };
        let start = self.0.iter().filter(holds).map(|(start, _, _)| *start).max()?;
        let names = self.0.iter().filter(holds).filter(|(s, _, _)| *s == start).map(|(_, _, n)| n.as_str()).collect();
        Some((start, names))
    }
}

/// `c++filt`'s readable form of each of `names`, less what rustc's own
/// demangler leaves out in its alternate form (the one crashwatch shows):
/// the hash of a legacy Rust name (`::h0123…`) and the crate
/// disambiguators of a v0 name (`std[e28293b1aa0f68bd]`).
fn cxxfilt(names: &[String]) -> HashMap<String, String> {
    use std::io::Write;
    let mut child = Command::new("c++filt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("c++filt (binutils) is needed");
    child.stdin.take().unwrap().write_all(names.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let legacy_hash = regex::Regex::new(r"^_ZN.*17h[0-9a-f]{16}E$").unwrap();
    let disambiguator = regex::Regex::new(r"\[[0-9a-f]+\]").unwrap();
    names
        .iter()
        .zip(text.lines())
        .map(|(raw, readable)| {
            let readable = if legacy_hash.is_match(raw) {
                readable.rsplit_once("::h").map_or(readable, |(path, _)| path).to_owned()
            } else if raw.starts_with("_R") {
                disambiguator.replace_all(readable, "").into_owned()
            } else {
                readable.to_owned()
            };
            (raw.clone(), readable)
        })
        .collect()
}

/// The readable name the oracle expects for `raw`: C names as they are,
/// without a symbol version (`__libc_start_main@@GLIBC_2.34`).
fn readable<'a>(raw: &'a str, demangled: &'a HashMap<String, String>) -> &'a str {
    if raw.starts_with("_Z") || raw.starts_with("_R") { &demangled[raw] } else { raw.split('@').next().unwrap() }
}

/// A process's mappings, from the dump's Linux maps stream:
/// `(start, end, file offset)`.
struct Maps(Vec<(u64, u64, u64)>);

impl Maps {
    fn of(dump: &Path) -> Maps {
        let text = String::from_utf8_lossy(&std::fs::read(dump).unwrap()).into_owned();
        // The stream is /proc/PID/maps verbatim; read its lines as text.
        let mut maps = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [range, perms, offset, ..] = fields[..] else { continue };
            let Some((start, end)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end), Ok(offset)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16), u64::from_str_radix(offset, 16))
            else {
                continue;
            };
            if perms.len() == 4 && start < end {
                maps.push((start, end, offset));
            }
        }
        assert!(!maps.is_empty(), "no maps in {}", dump.display());
        Maps(maps)
    }

    /// The virtual address, in `file`'s own terms (as `nm` prints them), of
    /// `address` in the crashed process: its file offset by the mappings,
    /// then the segment holding that offset by `readelf -l`. `file` is the
    /// file that ran (stripping moves segments in the file, not in memory).
    fn file_address(&self, file: &Path, address: u64) -> u64 {
        let &(start, _, offset) = self.0.iter().find(|(s, e, _)| (*s..*e).contains(&address)).unwrap();
        let file_offset = address - start + offset;
        let out = String::from_utf8(common::run_tool("readelf", &["-lW".as_ref(), file.as_os_str()])).unwrap();
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("LOAD"))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
            .find_map(|f| {
                let (p_offset, p_vaddr, p_filesz) = (hex(f[0]), hex(f[1]), hex(f[3]));
                (p_offset - p_offset % 4096 <= file_offset && file_offset < p_offset + p_filesz)
                    .then(|| p_vaddr + file_offset - p_offset)
            })
            .unwrap_or_else(|| panic!("{file_offset:#x} is in no segment of {}", file.display()))
    }
}

/// `addr2line -f -i` at `address` of `file`: `(raw function, file, line)`,
/// innermost first.
fn addr2line(file: &Path, address: u64) -> Vec<(String, String, Option<u32>)> {
    let out = common::run_tool(
        "addr2line",
        &["-f".as_ref(), "-i".as_ref(), "-e".as_ref(), file.as_os_str(), format!("{address:#x}").as_ref()],
    );
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            let location = pair[1].split(" (discriminator").next().unwrap();
            let (path, line) = location.rsplit_once(':').unwrap();
            (pair[0].to_owned(), path.to_owned(), line.parse().ok().filter(|l| *l > 0))
        })
        .collect()
}

/// Where the oracle reads a module: the unstripped original when the test
/// stripped it, else the module's separate debug file (by build-id) and
/// the module itself.
fn oracle_files(module: &Module, originals: &HashMap<PathBuf, PathBuf>) -> Vec<PathBuf> {
    let path = PathBuf::from(&module.code_file);
    if let Some(original) = originals.get(&path) {
        return vec![original.clone()];
    }
    let mut files = Vec::new();
    if let Some(id) = module.code_id.as_deref().filter(|id| id.len() > 2) {
        let debug = Path::new("/usr/lib/debug/.build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]));
        if debug.exists() {
            files.push(debug);
        }
    }
    files.push(path);
    files
}

/// Checks every named frame of every thread; returns the checked frames'
/// `(module file name, function)`, physical frames only.
fn check(s: &Symbolicated, dump: &Path, originals: &HashMap<PathBuf, PathBuf>) -> Vec<(String, String)> {
    let maps = Maps::of(dump);
    let modules: HashMap<u64, &Module> = s.modules.iter().map(|m| (m.base, m)).collect();
    let mut symbols: HashMap<u64, Symbols> = HashMap::new();
    let frames: Vec<&Frame> = s.threads.iter().flat_map(|t| &t.frames).collect();
    let mut raw: Vec<String> = frames.iter().filter_map(|f| f.symbol.clone()).collect();
    let mut checked = Vec::new();
    let mut failures = Vec::new();

    // Physical frames: the symbol holding the address, by nm.
    for frame in frames.iter().filter(|f| !f.inlined && f.function.is_some()) {
        let module = modules[&frame.module_base.expect("a named frame is in a module")];
        let files = oracle_files(module, originals);
        let table = symbols
            .entry(module.base)
            .or_insert_with(|| Symbols::of(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>()));
        let address = maps.file_address(Path::new(&module.code_file), frame.instruction);
        let symbol = frame.symbol.clone().unwrap_or_else(|| panic!("a named frame without its symbol: {frame:#?}"));
        match table.at(address) {
            Some((start, names)) if names.contains(&symbol.as_str()) => {
                let ours = maps.file_address(Path::new(&module.code_file), frame.function_address.unwrap());
                if ours != start {
                    failures.push(format!("{symbol} at {address:#x}: starts at {ours:#x}, nm says {start:#x}"));
                }
            }
            found => failures.push(format!("{} at {address:#x}: we say {symbol}, nm says {found:?}", module.code_file)),
        }
        checked.push((frame.module.clone().unwrap(), frame.function.clone().unwrap()));
    }

    // Inlined calls: addr2line's chain at each physical frame that has them.
    let mut chains = Vec::new();
    for thread in &s.threads {
        let mut inlined: Vec<&Frame> = Vec::new();
        for frame in &thread.frames {
            if frame.inlined {
                inlined.push(frame);
                continue;
            }
            if !inlined.is_empty() {
                let module = modules[&frame.module_base.unwrap()];
                let files = oracle_files(module, originals);
                let address = maps.file_address(Path::new(&module.code_file), frame.instruction);
                let chain = addr2line(&files[0], address);
                raw.extend(chain.iter().map(|(name, _, _)| name.clone()));
                chains.push((std::mem::take(&mut inlined), chain, address));
            }
        }
    }
    raw.sort();
    raw.dedup();
    let demangled = cxxfilt(&raw);
    for frame in frames.iter().filter(|f| !f.inlined && f.symbol.is_some()) {
        let symbol = frame.symbol.as_deref().unwrap();
        if frame.function.as_deref() != Some(readable(symbol, &demangled)) {
            failures.push(format!("{symbol}: we say {:?}, c++filt says {:?}", frame.function, demangled.get(symbol)));
        }
    }
    for (inlined, chain, address) in chains {
        // The chain ends with the function they were inlined into.
        let theirs: Vec<(&str, Option<u32>)> =
            chain[..chain.len() - 1].iter().map(|(name, _, line)| (readable(name, &demangled), *line)).collect();
        let ours: Vec<(&str, Option<u32>)> =
            inlined.iter().map(|f| (f.function.as_deref().unwrap_or("??"), f.line)).collect();
        if ours != theirs {
            failures.push(format!("inlined calls at {address:#x}: we say {ours:?}, addr2line says {theirs:?}"));
        }
    }
    assert!(failures.is_empty(), "{} frames disagree with binutils:\n{}", failures.len(), failures.join("\n"));
    checked
}

fn module<'a>(s: &'a Symbolicated, file_name: &str) -> &'a Module {
    s.modules
        .iter()
        .find(|m| Path::new(&m.code_file).file_name() == Some(OsStr::new(file_name)))
        .unwrap_or_else(|| panic!("no module {file_name} in {:#?}", s.modules))
}

fn names_in<'a>(checked: &'a [(String, String)], module: &str) -> Vec<&'a str> {
    checked.iter().filter(|(m, _)| m == module).map(|(_, f)| f.as_str()).collect()
}

fn libc_name(s: &Symbolicated) -> String {
    let libc = s.modules.iter().find(|m| m.code_file.contains("/libc.so")).expect("libc is mapped");
    Path::new(&libc.code_file).file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn c_program_and_the_c_library_with_its_debug_file() {
    let dir = common::scratch();
    let exe = dir.path().join("nested");
    common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer"]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::new());
    assert_eq!(names_in(&checked, "nested"), ["level3", "level2", "level1", "main", "_start"]);
    // glibc's own names, underscores and all (its debug file is installed
    // by .ci/test: libc6-dbg).
    let libc = libc_name(&s);
    assert_eq!(names_in(&checked, &libc), ["__libc_start_call_main", "__libc_start_main"]);
    assert_eq!(module(&s, &libc).symbols, SymbolSource::Dwarf);
    assert_eq!(module(&s, "nested").symbols, SymbolSource::Dwarf);

    let exe = dir.path().join("inlined");
    common::gcc("inlined.c", &exe, &["-O2"]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::new());
    assert_eq!(names_in(&checked, "inlined"), ["checksum", "main", "_start"]);
    let inlined: Vec<_> = s.threads.iter().flat_map(|t| &t.frames).filter(|f| f.inlined).collect();
    assert_eq!(inlined.len(), 1);
    assert_eq!(inlined[0].function.as_deref(), Some("read_through"));
}

#[test]
fn cpp_program_and_libstdcxx_with_only_dynsym() {
    let dir = common::scratch();
    let exe = dir.path().join("terminate");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/programs/terminate.cpp");
    common::run_tool("g++", &["-g".as_ref(), "-O0".as_ref(), "-o".as_ref(), exe.as_os_str(), source.as_os_str()]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::new());
    assert_eq!(
        names_in(&checked, "terminate"),
        [
            "load_config(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&)",
            "main",
            "_start"
        ]
    );
    let libstdcxx = s.modules.iter().find(|m| m.code_file.contains("libstdc++")).unwrap();
    assert_eq!(libstdcxx.symbols, SymbolSource::Dynsym);
    let named = names_in(&checked, Path::new(&libstdcxx.code_file).file_name().unwrap().to_str().unwrap());
    assert!(named.contains(&"__cxa_throw"), "{named:?}");
}

#[test]
fn rust_program_with_std() {
    let dir = common::scratch();
    let exe = dir.path().join("rust_crash");
    common::rustc("rust_crash.rs", &exe, &[]);
    let crash = common::crash(&exe, &["panic"]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::new());
    let named = names_in(&checked, "rust_crash");
    let at = named.iter().position(|n| *n == "rust_crash::parse_config").unwrap_or_else(|| panic!("{named:?}"));
    assert!(named[..at].contains(&"core::panicking::panic_fmt"), "{named:?}");
    assert_eq!(named.last(), Some(&"_start"), "{named:?}");
}

/// A C program whose function symbols live only in its MiniDebugInfo, made
/// as Fedora makes it: the symbols `.dynsym` lacks, in an xz-compressed
/// ELF in `.gnu_debugdata`, and everything else stripped.
#[test]
fn mini_debug_info() {
    let dir = common::scratch();
    let full = dir.path().join("nested.full");
    common::gcc("nested.c", &full, &["-O0", "-fno-omit-frame-pointer"]);
    let exe = dir.path().join("nested");
    let tmp = |name: &str| dir.path().join(name);
    let dynamic = String::from_utf8(common::run_tool(
        "nm",
        &["-D".as_ref(), "--format=posix".as_ref(), "--defined-only".as_ref(), full.as_os_str()],
    ))
    .unwrap();
    let dynamic: Vec<&str> = dynamic.lines().filter_map(|l| l.split(' ').next()).collect();
    let functions = String::from_utf8(common::run_tool(
        "nm",
        &["--format=posix".as_ref(), "--defined-only".as_ref(), full.as_os_str()],
    ))
    .unwrap();
    let keep: Vec<&str> = functions
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let (name, kind) = (fields.next()?, fields.next()?);
            (matches!(kind, "T" | "t") && !dynamic.contains(&name)).then_some(name)
        })
        .collect();
    std::fs::write(tmp("keep"), keep.join("\n") + "\n").unwrap();
    common::run_tool("objcopy", &["--only-keep-debug".as_ref(), full.as_os_str(), tmp("debug").as_os_str()]);
    common::run_tool(
        "objcopy",
        &[
            "-S".as_ref(),
            "--remove-section".as_ref(),
            ".gdb_index".as_ref(),
            "--remove-section".as_ref(),
            ".comment".as_ref(),
            "--keep-symbols".as_ref(),
            tmp("keep").as_os_str(),
            tmp("debug").as_os_str(),
            tmp("mini").as_os_str(),
        ],
    );
    common::run_tool("xz", &["--keep".as_ref(), tmp("mini").as_os_str()]);
    common::run_tool(
        "strip",
        &["--strip-all".as_ref(), "-R".as_ref(), ".comment".as_ref(), "-o".as_ref(), exe.as_os_str(), full.as_os_str()],
    );
    let section = format!(".gnu_debugdata={}", tmp("mini.xz").display());
    common::run_tool("objcopy", &["--add-section".as_ref(), section.as_ref(), exe.as_os_str()]);
    let sections = String::from_utf8(common::run_tool("readelf", &["-SW".as_ref(), exe.as_os_str()])).unwrap();
    assert!(sections.contains(".gnu_debugdata") && !sections.contains(".symtab"), "{sections}");

    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::from([(exe.clone(), full.clone())]));
    assert_eq!(names_in(&checked, "nested"), ["level3", "level2", "level1", "main", "_start"]);
    assert_eq!(module(&s, "nested").symbols, SymbolSource::Symtab);
    // No DWARF: no lines.
    assert!(s.threads[0].frames.iter().filter(|f| f.module.as_deref() == Some("nested")).all(|f| f.line.is_none()));
}

/// Node.js as installed (with its `.symtab`): `process.abort()` goes
/// through node's C++ into the C library.
#[test]
fn node_abort() {
    let node = which("node");
    let crash = common::crash(&node, &["-e", "process.abort()"]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::new());
    let named = names_in(&checked, "node");
    // node::Abort and its callers, through V8's embedded builtins (run from
    // a second mapping of the file) and the C++ below them.
    for name in [
        "node::Abort(v8::FunctionCallbackInfo<v8::Value> const&)",
        "Builtins_InterpreterEntryTrampoline",
        "Builtins_JSEntry",
        "v8::Script::Run(v8::Local<v8::Context>, v8::Local<v8::Data>)",
        "node::Start(int, char**)",
    ] {
        assert!(named.contains(&name), "{name} not in {named:#?}");
    }
    assert_eq!(names_in(&checked, &libc_name(&s))[..3], ["__pthread_kill_implementation", "raise", "abort"]);
}

/// The same `node` stripped to its `.dynsym` (as distributions ship it):
/// a frame in a function that is not exported is `node + offset`, never
/// named after the exported function before it. Checked against the
/// unstripped file.
#[test]
fn node_with_only_dynsym() {
    let node = which("node");
    let dir = common::scratch();
    let stripped = dir.path().join("node");
    common::run_tool("strip", &["--strip-all".as_ref(), "-o".as_ref(), stripped.as_os_str(), node.as_os_str()]);
    let crash = common::crash(&stripped, &["-e", "process.abort()"]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let checked = check(&s, crash.dump(), &HashMap::from([(stripped.clone(), node.clone())]));
    assert_eq!(module(&s, "node").symbols, SymbolSource::Dynsym);

    // Frames in node that no exported symbol holds: unnamed, and the
    // unstripped file says they are in functions of its own.
    let base = module(&s, "node").base;
    let full = Symbols::of(&[&node]);
    let maps = Maps::of(crash.dump());
    let exported = Symbols::of(&[&stripped]);
    let unnamed: Vec<&Frame> = s.threads[s.crashing_thread.unwrap()]
        .frames
        .iter()
        .filter(|f| f.module_base == Some(base) && f.function.is_none())
        .collect();
    let hidden: Vec<String> = unnamed
        .iter()
        .filter_map(|f| {
            let address = maps.file_address(&stripped, f.instruction);
            exported.at(address).is_none().then(|| full.at(address).map(|(_, n)| n[0].to_owned())).flatten()
        })
        .collect();
    assert!(hidden.iter().any(|n| n == "_ZN4nodeL5AbortERKN2v820FunctionCallbackInfoINS0_5ValueEEE"), "{hidden:?}");
    assert!(hidden.iter().any(|n| n == "Builtins_InterpreterEntryTrampoline"), "{hidden:?}");
    // The exported ones keep their names.
    let named = names_in(&checked, "node");
    assert!(
        named.contains(&"v8::internal::Builtin_HandleApiCall(int, unsigned long*, v8::internal::Isolate*)"),
        "{named:?}"
    );
    assert!(!names_in(&checked, "node").iter().any(|n| n.starts_with("node::Abort")));
}

fn which(program: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().unwrap();
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!path.is_empty(), "{program} is needed (installed by .ci/test)");
    std::fs::canonicalize(path).unwrap()
}
