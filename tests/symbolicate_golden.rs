//! Golden tests: real dumps of real crashers (captured by crashwatch run),
//! symbolicated to the expected functions and lines.

#[path = "symbolicate_common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::names_lines;
use crashwatch::symbolicate::{Module, SymbolOptions, SymbolSource, Symbolicated, render_text, symbolicate};

fn f(name: &str, line: u32) -> (Option<String>, Option<u32>, bool) {
    (Some(name.to_owned()), Some(line), false)
}

fn inl(name: &str, line: u32) -> (Option<String>, Option<u32>, bool) {
    (Some(name.to_owned()), Some(line), true)
}

fn module<'a>(s: &'a Symbolicated, path: &Path) -> &'a Module {
    s.modules
        .iter()
        .find(|m| Path::new(&m.code_file) == path)
        .unwrap_or_else(|| panic!("no module {} in {:#?}", path.display(), s.modules))
}

/// The render with run-specific values redacted and system libraries'
/// lines dropped, so the snapshot holds only what the test controls.
fn snapshot(name: &str, s: &Symbolicated, tmp: &Path) {
    let text = render_text(s);
    let kept: String = text
        .lines()
        .filter(|l| !["libc.so", "ld-linux", "linux-vdso"].iter().any(|lib| l.contains(lib)))
        .map(|l| format!("{l}\n"))
        .collect();
    common::assert_snapshot(name, &common::redact(&kept, tmp));
}

/// Mozilla's dump_syms: `DUMP_SYMS`, then PATH, then where `cargo install
/// --root /tmp/dump_syms dump_syms` put it for this prototype.
fn dump_syms() -> PathBuf {
    let candidates = [
        std::env::var_os("DUMP_SYMS").map(PathBuf::from),
        Some(PathBuf::from("dump_syms")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/dump_syms")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("dump_syms not found: `cargo install dump_syms` or set DUMP_SYMS")
}

/// Writes `binary`'s Breakpad symbols to `dir/NAME/DEBUGID/NAME.sym`.
fn write_sym_tree(binary: &Path, dir: &Path) {
    let sym = common::run_tool(dump_syms().to_str().unwrap(), &["--inlines".as_ref(), binary.as_os_str()]);
    let sym = String::from_utf8(sym).unwrap();
    // MODULE Linux x86_64 DEBUGID NAME
    let first = sym.lines().next().unwrap();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields[0], "MODULE", "{first}");
    let (id, name) = (fields[3], fields[4]);
    let target = dir.join(name).join(id);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(format!("{name}.sym")), sym).unwrap();
}

/// Strips `full` into `stripped` (same file name, other directory) and
/// installs its debug file as `root/.build-id/xx/rest.debug`.
fn strip_with_build_id_debug_file(full: &Path, stripped: &Path, root: &Path) {
    let debug = full.with_extension("debug");
    common::run_tool("objcopy", &["--only-keep-debug".as_ref(), full.as_os_str(), debug.as_os_str()]);
    common::run_tool("strip", &["--strip-all".as_ref(), "-o".as_ref(), stripped.as_os_str(), full.as_os_str()]);
    let out = String::from_utf8(common::run_tool("readelf", &["-n".as_ref(), stripped.as_os_str()])).unwrap();
    let id = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("stripped binary keeps its build-id note")
        .trim()
        .to_owned();
    let dir = root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&debug, dir.join(format!("{}.debug", &id[2..]))).unwrap();
}

/// Options that see no system debug directory besides wholesym's own.
fn only(f: impl FnOnce(&mut SymbolOptions)) -> SymbolOptions {
    let mut opts = SymbolOptions { debug_dirs: Vec::new(), ..SymbolOptions::default() };
    f(&mut opts);
    opts
}

#[test]
fn c_o0_nested_calls() {
    let dir = common::scratch();
    let exe = dir.path().join("nested");
    common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer"]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();

    assert_eq!(s.crash_reason.as_deref(), Some("SIGSEGV / SEGV_MAPERR"));
    assert_eq!(s.crash_address, Some(0));
    assert_eq!(s.diagnosis.as_deref(), Some("null pointer dereference"));
    assert_eq!(s.cpu, "amd64");
    let frames = names_lines(&s);
    assert_eq!(frames[..4], [f("level3", 13), f("level2", 14), f("level1", 15), f("main", 18)], "{frames:#?}");
    let first = &s.threads[s.crashing_thread.unwrap()].frames[0];
    assert_eq!(first.trust, "context");
    assert_eq!(first.module.as_deref(), Some("nested"));
    assert!(first.file.as_deref().unwrap().ends_with("testdata/symbolicate/nested.c"));
    let main = module(&s, &exe);
    assert_eq!(main.symbols, SymbolSource::Dwarf);
    assert_eq!(main.problem, None);
    assert_eq!(main.code_id.as_deref().map(str::len), Some(40), "sha1 build-id");
    snapshot("c_o0_nested", &s, dir.path());
}

#[test]
fn c_o2_inlined_frame_is_present_once_and_marked() {
    let dir = common::scratch();
    let exe = dir.path().join("inlined");
    common::gcc("inlined.c", &exe, &["-O2"]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let frames = names_lines(&s);
    assert_eq!(frames[..3], [inl("read_through", 7), f("checksum", 11), f("main", 17)], "{frames:#?}");
    let inlined = &s.threads[s.crashing_thread.unwrap()].frames[0];
    assert_eq!(inlined.trust, "inlined");
    assert_eq!(inlined.function_address, None);
    snapshot("c_o2_inlined", &s, dir.path());

    // Two sources that both know the inlining (DWARF and dump_syms' INLINE
    // records): still one inline frame, from the first source.
    let syms = dir.path().join("syms");
    write_sym_tree(&exe, &syms);
    let both =
        symbolicate(crash.dump(), &SymbolOptions { symbol_dirs: vec![syms], ..SymbolOptions::default() }).unwrap();
    assert_eq!(names_lines(&both), frames);
    assert_eq!(module(&both, &exe).symbols, SymbolSource::Dwarf);
}

#[test]
fn rust_null_write_and_panic_abort() {
    let dir = common::scratch();
    let exe = dir.path().join("rust_crash");
    common::rustc("rust_crash.rs", &exe, &[]);

    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    assert_eq!(s.crash_reason.as_deref(), Some("SIGSEGV / SEGV_MAPERR"));
    let frames = names_lines(&s);
    let ours: Vec<_> = frames
        .iter()
        .filter(|(n, _, _)| n.as_deref().is_some_and(|n| n.starts_with("rust_crash::")))
        .cloned()
        .collect();
    assert_eq!(
        ours,
        [
            f("rust_crash::store", 7),
            f("rust_crash::parse_config", 18),
            f("rust_crash::parse_config", 13),
            f("rust_crash::parse_config", 13),
            f("rust_crash::main", 24),
        ],
        "{frames:#?}"
    );
    // write_volatile is the innermost frame, store right after it.
    assert_eq!(frames[0].0.as_deref(), Some("core::ptr::write_volatile"));

    let crash = common::crash(&exe, &["panic"]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    assert_eq!(s.crash_reason.as_deref(), Some("SIGABRT / SI_TKILL"));
    let frames = names_lines(&s);
    let names: Vec<&str> = frames.iter().filter_map(|(n, _, _)| n.as_deref()).collect();
    let at = names.iter().position(|n| *n == "rust_crash::parse_config").unwrap_or_else(|| panic!("{names:#?}"));
    assert!(names[..at].contains(&"core::panicking::panic_fmt"), "{names:#?}");
    assert_eq!(frames[at], f("rust_crash::parse_config", 16));
    assert!(names[at..].contains(&"rust_crash::main"));
}

#[test]
fn stripped_binary_with_debug_file_under_build_id_dir() {
    let dir = common::scratch();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let (full_exe, exe) = (full.join("nested"), run.join("nested"));
    common::gcc("nested.c", &full_exe, &["-O0", "-fno-omit-frame-pointer"]);
    let debug_root = dir.path().join("debugroot");
    strip_with_build_id_debug_file(&full_exe, &exe, &debug_root);
    let crash = common::crash(&exe, &[]);

    let s = symbolicate(crash.dump(), &only(|o| o.debug_dirs = vec![debug_root.clone()])).unwrap();
    let frames = names_lines(&s);
    assert_eq!(frames[..4], [f("level3", 13), f("level2", 14), f("level1", 15), f("main", 18)], "{frames:#?}");
    assert_eq!(module(&s, &exe).symbols, SymbolSource::Dwarf);

    // Without it: the stripped file only yields wholesym's fun_<hex>
    // placeholders, which must not pass for names.
    let bare = symbolicate(crash.dump(), &only(|_| {})).unwrap();
    let frames = common::crashing_frames(&bare);
    assert_eq!(frames[0].module.as_deref(), Some("nested"));
    for frame in frames.iter().filter(|f| f.module.as_deref() == Some("nested")) {
        assert!(frame.function.as_deref().is_none_or(|n| !n.starts_with("fun_")), "{frame:?}");
        assert_eq!(frame.line, None);
    }
    assert_eq!(frames[0].function, None);
    assert_eq!(module(&bare, &exe).symbols, SymbolSource::None);
}

#[test]
fn gnu_debuglink_next_to_the_binary() {
    let dir = common::scratch();
    let exe = dir.path().join("nested");
    common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer"]);
    let debug = dir.path().join("nested.debug");
    common::run_tool("objcopy", &["--only-keep-debug".as_ref(), exe.as_os_str(), debug.as_os_str()]);
    common::run_tool("strip", &["--strip-all".as_ref(), exe.as_os_str()]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    common::run_tool("objcopy", &[link.as_ref(), exe.as_os_str()]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &only(|_| {})).unwrap();
    assert_eq!(names_lines(&s)[..4], [f("level3", 13), f("level2", 14), f("level1", 15), f("main", 18)]);
}

#[test]
fn breakpad_sym_dir_from_dump_syms_matches_debuginfo() {
    for (source, flags) in [("nested.c", &["-O0", "-fno-omit-frame-pointer"][..]), ("inlined.c", &["-O2"][..])] {
        let dir = common::scratch();
        let name = source.trim_end_matches(".c");
        let full = dir.path().join("full");
        let run = dir.path().join("run");
        std::fs::create_dir(&full).unwrap();
        std::fs::create_dir(&run).unwrap();
        let (full_exe, exe) = (full.join(name), run.join(name));
        common::gcc(source, &full_exe, flags);
        let debug_root = dir.path().join("debugroot");
        strip_with_build_id_debug_file(&full_exe, &exe, &debug_root);
        let syms = dir.path().join("syms");
        write_sym_tree(&full_exe, &syms);
        let crash = common::crash(&exe, &[]);

        let from_dwarf = symbolicate(crash.dump(), &only(|o| o.debug_dirs = vec![debug_root.clone()])).unwrap();
        let from_sym = symbolicate(crash.dump(), &only(|o| o.symbol_dirs = vec![syms.clone()])).unwrap();
        assert_eq!(module(&from_dwarf, &exe).symbols, SymbolSource::Dwarf);
        assert_eq!(module(&from_sym, &exe).symbols, SymbolSource::Breakpad);
        // C names as the symbol table spells them in both (`_start`).
        let (a, b) = (names_lines(&from_dwarf), names_lines(&from_sym));
        assert_eq!(a, b, "{name}: debuginfo vs .sym");
        let files = |s: &Symbolicated| -> Vec<Option<String>> {
            common::crashing_frames(s).iter().map(|f| f.file.clone()).collect()
        };
        assert_eq!(files(&from_dwarf), files(&from_sym), "{name}: source files");
        assert!(a.iter().any(|(n, _, _)| n.as_deref() == Some("main")), "{a:#?}");
        assert!(a.iter().any(|(n, _, _)| n.as_deref() == Some("_start")), "{a:#?}");
    }
}

/// A one-thread HTTP/1.1 server for a Breakpad symbol tree; records paths.
fn serve(root: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/symbols", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = request.split(' ').nth(1).unwrap_or("/");
            // breakpad-symbols appends ?code_file=…&code_id=…
            let path = target.split('?').next().unwrap_or(target).to_owned();
            seen.lock().unwrap().push(path.clone());
            let file = path.strip_prefix("/symbols/").filter(|p| !p.contains("..")).map(|p| root.join(p));
            let response = match file.and_then(|f| std::fs::read(f).ok()) {
                Some(body) => {
                    let mut r =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    (url, log)
}

#[test]
fn symbol_server_with_on_disk_cache() {
    let dir = common::scratch();
    let full = dir.path().join("full");
    let run = dir.path().join("run");
    std::fs::create_dir(&full).unwrap();
    std::fs::create_dir(&run).unwrap();
    let (full_exe, exe) = (full.join("nested"), run.join("nested"));
    common::gcc("nested.c", &full_exe, &["-O0", "-fno-omit-frame-pointer"]);
    common::run_tool("strip", &["--strip-all".as_ref(), "-o".as_ref(), exe.as_os_str(), full_exe.as_os_str()]);
    let syms = dir.path().join("server");
    write_sym_tree(&full_exe, &syms);
    let crash = common::crash(&exe, &[]);
    let (url, log) = serve(syms);
    let cache = dir.path().join("cache");

    let opts = only(|o| {
        o.symbol_urls = vec![url.clone()];
        o.cache_dir = Some(cache.clone());
    });
    let s = symbolicate(crash.dump(), &opts).unwrap();
    assert_eq!(names_lines(&s)[..4], [f("level3", 13), f("level2", 14), f("level1", 15), f("main", 18)]);
    assert_eq!(module(&s, &exe).symbols, SymbolSource::Http);
    let fetched = log.lock().unwrap().clone();
    assert!(fetched.iter().any(|p| p.ends_with("/nested.sym")), "{fetched:?}");
    let debug_id = module(&s, &exe).debug_id.clone().unwrap();
    assert!(cache.join("nested").join(&debug_id).join("nested.sym").is_file());

    // Second run: served from the cache, the server is not asked again.
    let requests = log.lock().unwrap().len();
    let again = symbolicate(crash.dump(), &opts).unwrap();
    assert_eq!(names_lines(&again), names_lines(&s));
    let after: Vec<String> = log.lock().unwrap()[requests..].to_vec();
    assert!(!after.iter().any(|p| p.contains("/nested/")), "{after:?}");
}

#[test]
fn binary_replaced_after_the_crash() {
    let dir = common::scratch();
    let app = dir.path().join("app");
    let kept = dir.path().join("preserved");
    std::fs::create_dir(&app).unwrap();
    std::fs::create_dir(&kept).unwrap();
    let exe = app.join("nested");
    common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer"]);
    let preserved = kept.join("nested.orig");
    std::fs::copy(&exe, &preserved).unwrap();
    let crash = common::crash(&exe, &[]);
    // The next deploy: another build at the same path.
    common::gcc("nested.c", &exe, &["-O0", "-fno-omit-frame-pointer", "-DVARIANT"]);

    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let m = module(&s, &exe);
    let problem = m.problem.as_deref().unwrap();
    assert!(problem.starts_with("build-id mismatch: file on disk is "), "{problem}");
    assert!(problem.ends_with(&format!("expected {}", m.code_id.as_deref().unwrap())), "{problem}");
    assert_eq!(m.symbols, SymbolSource::None);
    for frame in common::crashing_frames(&s) {
        if frame.module.as_deref() == Some("nested") {
            assert_eq!(frame.function, None, "a name from the wrong build: {frame:?}");
        }
    }
    snapshot("c_replaced_binary", &s, dir.path());

    let with_copy = symbolicate(
        crash.dump(),
        &SymbolOptions { replacements: vec![(exe.clone(), preserved.clone())], ..SymbolOptions::default() },
    )
    .unwrap();
    assert_eq!(names_lines(&with_copy)[..4], [f("level3", 13), f("level2", 14), f("level1", 15), f("main", 18)]);
    let m = module(&with_copy, &exe);
    assert_eq!((m.symbols, m.problem.as_deref()), (SymbolSource::Dwarf, None));

    // A preserved copy of yet another build is refused too, and said so.
    let wrong = symbolicate(
        crash.dump(),
        &SymbolOptions { replacements: vec![(exe.clone(), exe.clone())], ..SymbolOptions::default() },
    )
    .unwrap();
    let problem = module(&wrong, &exe).problem.clone().unwrap();
    assert!(problem.contains("preserved copy"), "{problem}");
}

#[test]
fn json_round_trip() {
    let dir = common::scratch();
    let exe = dir.path().join("inlined");
    common::gcc("inlined.c", &exe, &["-O2"]);
    let crash = common::crash(&exe, &[]);
    let s = symbolicate(crash.dump(), &SymbolOptions::default()).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: Symbolicated = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["modules"][0]["symbols"], "dwarf");
    assert_eq!(value["threads"][0]["frames"][0]["inlined"], true);
}
