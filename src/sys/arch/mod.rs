//! Everything that differs between CPU architectures, behind one seam: the
//! registers ptrace returns, the crash context minidump-writer takes, and
//! the kernel's signal frame. Only x86_64 exists today; a port (aarch64:
//! `PTRACE_GETREGSET` with `NT_PRSTATUS`/`NT_PRFPREG`, arm64's
//! `rt_sigframe` and `sigcontext`) is one more module here with the same
//! items, and nothing outside this folder changes.

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "crashwatch runs on x86_64 Linux only for now: registers, the crash context and the signal frame \
     are read in src/sys/arch/x86_64.rs, and a port adds its own module beside it"
);

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
