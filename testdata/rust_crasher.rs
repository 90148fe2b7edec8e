//! rust_crasher panic|overflow|null — built by the tests with
//! `rustc -C panic=abort -g`.
//!
//! panic: a thread named "worker" panics; with panic=abort the process takes
//! SIGABRT on that thread after the panic message is printed.
//! overflow: unbounded recursion; Rust's own SIGSEGV handler (which the
//! tracer must let through) reports the overflow and aborts: SIGABRT.
//! null: a write to address 0x40. Rust's SIGSEGV handler takes the fault,
//! sees it is not a stack overflow, sets SIGSEGV back to SIG_DFL and
//! returns; the write faults again and the process dies of SIGSEGV.
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
        // SAFETY: none; the write is meant to fault.
        Some("null") => unsafe { std::ptr::write_volatile(black_box(0x40 as *mut u64), 1) },
        _ => {
            eprintln!("usage: rust_crasher panic|overflow|null");
            std::process::exit(64);
        }
    }
}
