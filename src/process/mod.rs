//! The words every stage uses about a process: how it ended
//! ([`ChildStatus`], [`WaitStatus`]), signals by name, a signal's
//! [`SigInfo`], and the facts `/proc` gives ([`procfs`]). A leaf: it
//! imports nothing of crashwatch but `sys`.

pub mod dispositions;
pub mod procfs;
pub mod siginfo;
pub mod signals;
pub mod status;
pub mod wait_status;

pub use siginfo::SigInfo;
pub use status::ChildStatus;
pub use wait_status::WaitStatus;
