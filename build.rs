//! Link-time settings of the `crashwatch` binary.

fn main() {
    println!("cargo::rerun-if-env-changed=CRASHWATCH_NO_RELR");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    // A build-id, which Debian's gcc adds by default but Zig's linker (the
    // portable build, scripts/build-release) does not: crashwatch's own
    // crashes are symbolicated by it, and debug files are found by it.
    println!("cargo::rustc-link-arg-bins=-Wl,--build-id=sha1");
    // Pack the binary's relative relocations (DT_RELR): its ~36,000 RELA
    // entries (860 KB, read by the dynamic loader at every start) become
    // 10 KB, which takes about 0.9 MB off the supervisor's resident memory.
    // Needs binutils ≥ 2.38 and, at run time, glibc ≥ 2.36 (Debian 12,
    // Ubuntu 22.10, RHEL 10); CRASHWATCH_NO_RELR=1 builds without it, as
    // the portable build does.
    if std::env::var_os("CRASHWATCH_NO_RELR").is_none() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
