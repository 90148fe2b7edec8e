use super::*;

#[test]
fn debug_ids_take_sentrys_form() {
    assert_eq!(
        sentry_debug_id("B2A3C6E1F0D24B6A8C1D2E3F4A5B6C7D0").as_deref(),
        Some("b2a3c6e1-f0d2-4b6a-8c1d-2e3f4a5b6c7d")
    );
    assert_eq!(
        sentry_debug_id("B2A3C6E1F0D24B6A8C1D2E3F4A5B6C7D1").as_deref(),
        Some("b2a3c6e1-f0d2-4b6a-8c1d-2e3f4a5b6c7d-1")
    );
    assert_eq!(sentry_debug_id("short"), None);
}

fn module(code_file: &str, base: u64, size: u64, image_base: Option<u64>) -> symbolicate::Module {
    symbolicate::Module {
        code_file: code_file.into(),
        code_id: Some("AB12".into()),
        debug_id: None,
        base,
        size,
        image_base,
        symbols: symbolicate::SymbolSource::Symtab,
        problem: None,
    }
}

#[test]
fn an_image_mapped_in_pieces_is_one_image_from_its_load_address() {
    let stacks = Symbolicated {
        cpu: "amd64".into(),
        os: "Linux".into(),
        crash_reason: None,
        crash_address: None,
        crashing_thread: None,
        diagnosis: None,
        threads: Vec::new(),
        modules: vec![
            // node: the first segment's record, then the code's, both
            // of one file loaded at 0x1000.
            module("/usr/bin/node", 0x1000, 0x800, Some(0x1000)),
            module("/usr/bin/node", 0x3000, 0x2000, Some(0x1000)),
            module("/usr/lib/libc.so.6", 0x9000, 0x100, None),
        ],
    };
    let got: Vec<(String, String, u64)> = images(&stacks)
        .iter()
        .map(|i| {
            let file = i["code_file"].as_str().unwrap().to_owned();
            (file, i["image_addr"].as_str().unwrap().to_owned(), i["image_size"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [("/usr/bin/node".into(), "0x1000".into(), 0x4000), ("/usr/lib/libc.so.6".into(), "0x9000".into(), 0x100)]
    );
    assert_eq!(load_address(&stacks.modules[1]), 0x1000);
}

#[test]
fn system_libraries_are_not_in_app() {
    assert!(is_in_app("/srv/app/bin/server"));
    assert!(!is_in_app("/usr/lib/x86_64-linux-gnu/libc.so.6"));
    assert!(!is_in_app("/lib/x86_64-linux-gnu/libpthread.so.0"));
    assert!(!is_in_app("linux-vdso.so.1"));
}
