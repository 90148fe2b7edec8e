//! Why a dump could not be symbolicated at all.
//!
//! Only failures that leave nothing to report are errors. A module whose
//! file is missing or was replaced, a symbol server that is down, a thread
//! without a stack: those are recorded in the result (`Module::problem`,
//! frames without names) because a partial stack is still worth sending.

use std::path::PathBuf;

/// Errors of [`super::symbolicate`]. Every message names the dump file.
#[derive(Debug, thiserror::Error)]
pub enum SymbolicateError {
    #[error("cannot read minidump {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a readable minidump: {path}: {reason}")]
    NotAMinidump { path: PathBuf, reason: String },
    #[error("minidump {path} cannot be processed: {reason}")]
    Process { path: PathBuf, reason: String },
    #[error("invalid symbol server url {url:?} (symbolicating {path}): only http:// and https:// are supported")]
    BadSymbolUrl { path: PathBuf, url: String },
    #[error("cannot prepare the symbol cache for {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime to symbolicate {path}")]
    Runtime {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A dependency panicked on this dump. Caught so that one malformed dump
    /// is an error report, not a dead symbolication helper with no output.
    #[error("symbolication of {path} panicked: {message}")]
    Panicked { path: PathBuf, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_and_name_the_file() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<SymbolicateError>();
        let e = SymbolicateError::NotAMinidump { path: "/x/y.dmp".into(), reason: "header".into() };
        assert!(e.to_string().contains("/x/y.dmp"), "{e}");
        assert!(e.to_string().starts_with(char::is_lowercase), "{e}");
    }
}
