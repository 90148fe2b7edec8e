//! Rendering an error with its causes, `what failed: because: because`, for
//! the places that log an error rather than return it. (`main` renders the
//! errors it returns the same way, through anyhow's `{:#}`.)

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read /x")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn renders_every_cause() {
        let e = Outer(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(Chain(&e).to_string(), "failed to read /x: No such file or directory (os error 2)");
    }
}
