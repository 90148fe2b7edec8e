//! How the child ended, and the exit code crashwatch passes on for it.

use serde::{Deserialize, Serialize};

use crate::exit;
use crate::process::signals;

/// The end of a process, decoded from a raw wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal killed it. Whether the kernel wrote a core is unknown
    /// (`None`) when crashwatch did not reap the process itself.
    Signaled {
        signal: i32,
        #[serde(default)]
        core_dumped: Option<bool>,
    },
}

impl ChildStatus {
    /// Decodes a terminal wait status; `None` for stops and ptrace events.
    pub fn from_raw(status: i32) -> Option<ChildStatus> {
        if libc::WIFEXITED(status) {
            Some(ChildStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ChildStatus::Signaled { signal: libc::WTERMSIG(status), core_dumped: Some(libc::WCOREDUMP(status)) })
        } else {
            None
        }
    }

    /// What crashwatch exits with: the code, or 128+N for signal N, as a
    /// shell reports it.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildStatus::Exited(code) => code,
            ChildStatus::Signaled { signal, .. } => exit::SIGNAL_BASE + signal,
        }
    }

    /// Whether this end deserves a report: a non-zero code or any signal.
    pub fn is_abnormal(self) -> bool {
        self != ChildStatus::Exited(0)
    }
}

impl std::fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ChildStatus::Exited(code) => write!(f, "exited with code {code}"),
            ChildStatus::Signaled { signal, core_dumped } => {
                write!(f, "killed by {} ({})", signals::name(signal), signals::describe(signal))?;
                if core_dumped == Some(true) {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_statuses() {
        assert_eq!(ChildStatus::from_raw(3 << 8), Some(ChildStatus::Exited(3)));
        assert_eq!(ChildStatus::from_raw(11), Some(ChildStatus::Signaled { signal: 11, core_dumped: Some(false) }));
        assert_eq!(
            ChildStatus::from_raw(11 | 0x80),
            Some(ChildStatus::Signaled { signal: 11, core_dumped: Some(true) })
        );
        // Stopped by SIGSTOP: not an end.
        assert_eq!(ChildStatus::from_raw((19 << 8) | 0x7f), None);
        assert_eq!(ChildStatus::Signaled { signal: 9, core_dumped: None }.exit_code(), 137);
        assert_eq!(
            ChildStatus::Signaled { signal: 11, core_dumped: Some(false) }.to_string(),
            "killed by SIGSEGV (segmentation fault)"
        );
    }
}
