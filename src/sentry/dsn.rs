//! The DSN: where reports go and how they authenticate.
//!
//! A DSN looks like `https://PUBLIC_KEY@host[:port][/path]/PROJECT_ID`. It is
//! parsed by `sentry_types::Dsn`, but that parser answers "no valid url" or
//! "empty path" for most mistakes and accepts things Relay later refuses
//! (a non-numeric project id, a key that is not 32 hex digits). A user who
//! pasted the wrong string deserves to be told which part is wrong before the
//! first crash, not by a 400 from Relay after it, so the parts are checked here
//! one by one and each kind of mistake has its own error.
//!
//! The public key identifies the project and is not a password, but it does let
//! anyone submit events to it, so [`Dsn`]'s `Display` and `Debug` never print it.

use std::fmt;
use std::str::FromStr;

use sentry_types::Auth;
use url::Url;

/// Why a string is not a usable DSN.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// Nothing was given.
    #[error("dsn is empty")]
    Empty,
    /// The string does not parse as a URL at all.
    #[error("dsn is not a url (expected https://KEY@HOST/PROJECT_ID)")]
    NotAUrl(#[source] url::ParseError),
    /// Only `http` and `https` reach a Relay.
    #[error("dsn scheme {scheme:?} is not supported (use http or https)")]
    UnsupportedScheme {
        /// The scheme that was given.
        scheme: String,
    },
    /// The `KEY@` part is missing.
    #[error("dsn has no public key (expected {scheme}://KEY@HOST/PROJECT_ID)")]
    MissingPublicKey {
        /// The scheme of the DSN, to show the expected shape.
        scheme: String,
    },
    /// Relay only knows 32-hex-digit project keys and answers 400 to others.
    #[error("dsn public key is not 32 hexadecimal digits")]
    InvalidPublicKey,
    /// `https:///42` and the like.
    #[error("dsn has no host")]
    MissingHost,
    /// The path is empty: `https://KEY@HOST` or `https://KEY@HOST/`.
    #[error("dsn has no project id (expected a number as the last path segment)")]
    MissingProjectId,
    /// Relay routes `/api/{project_id}/envelope/` with a numeric id only.
    #[error("dsn project id {project_id:?} is not a number")]
    InvalidProjectId {
        /// The last path segment that was taken for the project id.
        project_id: String,
    },
    /// A query string or fragment would end up inside the envelope URL.
    #[error("dsn must not have a query string or fragment")]
    UnexpectedQuery,
    /// The checks above passed but `sentry_types` still refused the DSN.
    #[error("dsn was rejected by the sentry dsn parser")]
    Rejected(#[source] sentry_types::ParseDsnError),
}

/// A validated DSN.
///
/// `Display` and `Debug` show the DSN with the key replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    inner: sentry_types::Dsn,
    project_id: u64,
}

impl Dsn {
    /// The envelope endpoint: `{scheme}://{host}[:port][/path]/api/{project}/envelope/`.
    pub fn envelope_url(&self) -> Url {
        self.inner.envelope_api_url()
    }

    /// The value of the `X-Sentry-Auth` header:
    /// `Sentry sentry_key=…, sentry_version=7, sentry_client=crashwatch/VERSION`.
    ///
    /// A legacy secret key in the DSN is deliberately left out: Relay does not
    /// need it, and not sending it keeps it out of proxies' logs.
    pub fn auth_header(&self) -> String {
        let pairs = [
            ("sentry_key", self.inner.public_key()),
            ("sentry_version", "7"),
            ("sentry_client", crate::sentry::CLIENT_NAME),
        ];
        match Auth::from_pairs(pairs) {
            Ok(auth) => auth.to_string(),
            // `from_pairs` only fails for an empty key, which parsing excludes;
            // building the same string by hand keeps this total anyway.
            Err(_) => format!(
                "Sentry sentry_key={}, sentry_version=7, sentry_client={}",
                self.inner.public_key(),
                crate::sentry::CLIENT_NAME
            ),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &str {
        self.inner.public_key()
    }

    /// The numeric project id.
    pub fn project_id(&self) -> u64 {
        self.project_id
    }

    /// The DSN as written into an envelope header: key but never a secret.
    pub fn to_envelope_header(&self) -> String {
        let mut out = format!("{}://{}@{}", self.inner.scheme(), self.inner.public_key(), self.host_for_url());
        if self.inner.port() != self.inner.scheme().default_port() {
            out.push_str(&format!(":{}", self.inner.port()));
        }
        out.push_str(self.inner.path());
        out.push_str(&self.project_id.to_string());
        out
    }

    fn host_for_url(&self) -> String {
        // `sentry_types` keeps IPv6 hosts without brackets.
        let host = self.inner.host();
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DsnError::Empty);
        }
        let url = Url::parse(s).map_err(DsnError::NotAUrl)?;
        let scheme = url.scheme().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(DsnError::UnsupportedScheme { scheme });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DsnError::MissingHost);
        }
        let key = url.username();
        if key.is_empty() {
            return Err(DsnError::MissingPublicKey { scheme });
        }
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DsnError::InvalidPublicKey);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DsnError::UnexpectedQuery);
        }
        let last_segment = url.path().trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if last_segment.is_empty() {
            return Err(DsnError::MissingProjectId);
        }
        let project_id = match last_segment.parse::<u64>() {
            Ok(id) if last_segment.bytes().all(|b| b.is_ascii_digit()) => id,
            _ => {
                return Err(DsnError::InvalidProjectId { project_id: last_segment.to_owned() });
            }
        };
        let inner = sentry_types::Dsn::from_str(s).map_err(DsnError::Rejected)?;
        Ok(Self { inner, project_id })
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://***@{}", self.inner.scheme(), self.host_for_url())?;
        if self.inner.port() != self.inner.scheme().default_port() {
            write!(f, ":{}", self.inner.port())?;
        }
        write!(f, "{}{}", self.inner.path(), self.project_id)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Result<Dsn, DsnError> {
        s.parse()
    }

    #[test]
    fn envelope_url_keeps_port_and_path() {
        let dsn = parse(&format!("http://{KEY}@127.0.0.1:9000/sub/path/42")).unwrap();
        assert_eq!(dsn.envelope_url().as_str(), "http://127.0.0.1:9000/sub/path/api/42/envelope/");
        let dsn = parse(&format!("https://{KEY}@relay.example:443/7")).unwrap();
        assert_eq!(dsn.envelope_url().as_str(), "https://relay.example/api/7/envelope/");
        assert_eq!(dsn.project_id(), 7);
    }

    #[test]
    fn auth_header_has_exactly_key_version_client() {
        let dsn = parse(&format!("https://{KEY}:oldsecret@relay.example/42")).unwrap();
        assert_eq!(
            dsn.auth_header(),
            format!(
                "Sentry sentry_key={KEY}, sentry_version=7, sentry_client=crashwatch/{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn display_and_debug_never_print_the_key_or_secret() {
        let dsn = parse(&format!("https://{KEY}:s3cr3t@relay.example:8443/p/42")).unwrap();
        for shown in [dsn.to_string(), format!("{dsn:?}")] {
            assert!(!shown.contains(KEY), "{shown}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(dsn.to_string(), "https://***@relay.example:8443/p/42");
    }

    #[test]
    fn envelope_header_dsn_has_key_but_no_secret() {
        let dsn = parse(&format!("https://{KEY}:s3cr3t@relay.example:8443/p/42")).unwrap();
        assert_eq!(dsn.to_envelope_header(), format!("https://{KEY}@relay.example:8443/p/42"));
    }

    #[test]
    fn each_kind_of_bad_dsn_has_its_own_error() {
        assert!(matches!(parse("  "), Err(DsnError::Empty)));
        assert!(matches!(parse("relay.example/42"), Err(DsnError::NotAUrl(_))));
        assert!(matches!(
            parse(&format!("ftp://{KEY}@relay.example/42")),
            Err(DsnError::UnsupportedScheme { scheme }) if scheme == "ftp"
        ));
        assert!(matches!(parse("https://relay.example/42"), Err(DsnError::MissingPublicKey { .. })));
        assert!(matches!(parse("https://notakey@relay.example/42"), Err(DsnError::InvalidPublicKey)));
        assert!(matches!(parse(&format!("https://{KEY}@relay.example")), Err(DsnError::MissingProjectId)));
        assert!(matches!(parse(&format!("https://{KEY}@relay.example/")), Err(DsnError::MissingProjectId)));
        assert!(matches!(
            parse(&format!("https://{KEY}@relay.example/my-project")),
            Err(DsnError::InvalidProjectId { project_id }) if project_id == "my-project"
        ));
        assert!(matches!(parse(&format!("https://{KEY}@relay.example/42?x=1")), Err(DsnError::UnexpectedQuery)));
    }

    #[test]
    fn error_messages_are_lowercase_and_keep_the_cause() {
        let err = parse("::::").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("dsn is not a url"), "{msg}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
