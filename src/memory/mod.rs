//! How much memory the child uses and whether the OOM killer ended it: its
//! memory cgroup ([`cgroup`], v1 and v2), a [`sampler`] of its usage while it
//! runs (which also fires the `--oom-snapshot` trigger, woken by the kernel
//! through [`notify`] where it can be), the kernel log
//! ([`kmsg`]) and the verdict on a SIGKILL ([`oom`]).

pub mod cgroup;
pub mod kmsg;
pub mod notify;
pub mod oom;
pub mod sampler;
