//! rust_crasher panic|overflow — built by the tests with
//! `rustc -C panic=abort -g`.
//!
//! panic: a thread named "worker" panics; with panic=abort the process takes
//! SIGABRT on that thread after the panic message is printed.
//! overflow: unbounded recursion; Rust's own SIGSEGV handler (which the
//! tracer must let through) reports the overflow and aborts: SIGABRT.
use std::hint::black_box;

#[allow(unconditional_recursion)] // the point of the program
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 512]);
    recurse(depth + 1) + frame[7]
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("panic") => {
            let worker = std::thread::Builder::new().name("worker".into());
            let handle = worker.spawn(|| panic!("the answer was {}", 41 + 1)).unwrap();
            let _ = handle.join();
        }
        Some("overflow") => println!("{}", recurse(0)),
        _ => {
            eprintln!("usage: rust_crasher panic|overflow");
            std::process::exit(64);
        }
    }
}
