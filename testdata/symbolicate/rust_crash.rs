//! Rust crasher: `rust_crash` writes through a null pointer three calls deep;
//! `rust_crash panic` panics there instead (built with panic=abort: SIGABRT).

#[inline(never)]
fn store(slot: *mut u32, value: u32) {
    // SAFETY: none; writing through null is the point of this program.
    unsafe { std::ptr::write_volatile(slot, value) }
}

#[inline(never)]
fn parse_config(depth: u32, panic: bool) {
    if depth > 0 {
        parse_config(depth - 1, panic);
        std::hint::black_box(depth);
    } else if panic {
        panic!("config is corrupt");
    } else {
        store(std::ptr::null_mut(), 7);
    }
}

fn main() {
    let panic = std::env::args().nth(1).as_deref() == Some("panic");
    parse_config(2, panic);
}
