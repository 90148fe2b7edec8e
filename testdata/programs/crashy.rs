// Compiled by tests/rust_panics.rs with rustc; each mode dies a different way.
// Line numbers are asserted by the tests: edit with care.
use std::thread;

fn lookup(items: &[u32], i: usize) -> u32 {
    items[i]
}

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        panic!("guard dropped while unwinding");
    }
}

fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    recurse(pad[0] + 1) + pad[63]
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    println!("crashy starting: {mode}");
    match mode.as_str() {
        "thread" => {
            let worker = thread::Builder::new()
                .name("ingest-worker".into())
                .spawn(|| {
                    let items = vec![1, 2, 3];
                    println!("worker running");
                    lookup(&items, 7)
                })
                .expect("spawn");
            let _ = worker.join();
            std::process::exit(101);
        }
        "multiline" => panic!("config invalid:\n  port: missing\n  host: empty"),
        "overflow" => println!("{}", recurse(0)),
        "double" => {
            let _guard = Guard;
            panic!("request failed: {}", 503);
        }
        _ => {
            let parsed: Result<u16, String> = Err("not a number".to_string());
            parsed.unwrap();
        }
    }
}
