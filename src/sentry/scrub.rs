//! Secrets out of what leaves the host. A server's last lines and its
//! command line are what a crash report is for, and exactly where passwords,
//! tokens and keys turn up; every string of the event and the log-tail
//! attachment goes through [`Scrubber`] before it is written to the outbox.
//! The report in the spool stays as it was: it never leaves the host and is
//! private to the user (0600).
//!
//! A pattern either has a `secret` group, and only that part is replaced
//! (`password=[Filtered]` keeps the key, so the line still makes sense), or
//! it is replaced whole.

use std::borrow::Cow;
use std::ops::Range;

use regex::{Captures, Regex};
use serde_json::Value;

/// What a secret is replaced with (Sentry's own word for it).
pub const FILTERED: &str = "[Filtered]";

/// Patterns that catch the usual secrets in log lines and arguments, in the
/// order they are applied: the header forms first, or `Authorization:
/// Bearer TOKEN` would lose only the word "Bearer" to the keyed form.
const BUILT_IN: &[&str] = &[
    // Authorization headers
    r"(?i)\b(?:Bearer|Basic|Token)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    // key=value, key: value, "key": "value", --key=value, DB_PASSWORD=…
    r#"(?i)(?:\b|_)(?:passw(?:or)?d|pwd|pass|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|auth(?:orization)?|credentials?|private[_-]?key|session[_-]?id|cookie)["']?\s*[=:]\s*["']?(?P<secret>[^\s"',;&]+)"#,
    // scheme://user:password@host
    r"(?i)\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@",
    // a Sentry DSN's key: scheme://KEY@host
    r"(?i)\b[a-z][a-z0-9+.\-]*://(?P<secret>[0-9a-f]{32})@",
    // AWS access key ids
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    // JSON web tokens
    r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}",
];

#[derive(Debug, thiserror::Error)]
#[error("the scrub pattern '{pattern}' is not a valid regular expression")]
pub struct PatternError {
    pattern: String,
    #[source]
    source: regex::Error,
}

/// The patterns in force: the built-in ones and the user's.
///
/// They are compiled the first time something is scrubbed, not when
/// crashwatch starts: compiled regular expressions (and the compiler's code)
/// are about 1.5 MB of the supervisor's resident memory, which a server
/// that never crashes should not carry. The user's patterns are checked at
/// start all the same, so a bad one is still a usage error before the child
/// runs.
#[derive(Debug, Clone)]
pub struct Scrubber {
    extra: Vec<String>,
    patterns: std::sync::OnceLock<Vec<Regex>>,
}

impl Scrubber {
    /// The built-in patterns plus `extra` (the user's, replaced whole unless
    /// they have a `secret` group).
    pub fn new(extra: &[String]) -> Result<Scrubber, PatternError> {
        for pattern in extra {
            Regex::new(pattern).map_err(|source| PatternError { pattern: pattern.clone(), source })?;
        }
        Ok(Scrubber { extra: extra.to_vec(), patterns: std::sync::OnceLock::new() })
    }

    fn patterns(&self) -> &[Regex] {
        self.patterns.get_or_init(|| {
            // Both lists were compiled before: the built-in ones by the
            // tests, the user's by `new`.
            BUILT_IN
                .iter()
                .copied()
                .chain(self.extra.iter().map(String::as_str))
                .filter_map(|p| Regex::new(p).ok())
                .collect()
        })
    }

    /// `text` with every secret replaced by `[Filtered]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for pattern in self.patterns() {
            if !pattern.is_match(&text) {
                continue;
            }
            let replaced = pattern.replace_all(&text, |caps: &Captures<'_>| {
                let whole = caps.get(0).expect("group 0 always matches");
                match caps.name("secret") {
                    Some(secret) => {
                        let (start, end) = (secret.start() - whole.start(), secret.end() - whole.start());
                        format!("{}{FILTERED}{}", &whole.as_str()[..start], &whole.as_str()[end..])
                    }
                    None => FILTERED.to_string(),
                }
            });
            text = Cow::Owned(replaced.into_owned());
        }
        text
    }

    /// The byte ranges of `text` that [`Scrubber::scrub`] would replace,
    /// sorted and merged: for masking a secret in place where its length
    /// cannot change (a minidump's memory). Each pattern is matched against
    /// the original text rather than the progressively replaced one, which
    /// can only find more, never less.
    pub fn secret_ranges(&self, text: &str) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for pattern in self.patterns() {
            for caps in pattern.captures_iter(text) {
                let whole = caps.get(0).expect("group 0 always matches");
                let part = caps.name("secret").unwrap_or(whole);
                if !part.is_empty() {
                    ranges.push(part.range());
                }
            }
        }
        ranges.sort_by_key(|r| (r.start, r.end));
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        merged
    }

    /// Scrubs every string in a JSON value, in place.
    pub fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(text: &str) -> String {
        Scrubber::new(&[]).unwrap().scrub(text).into_owned()
    }

    #[test]
    fn every_pattern_compiles() {
        // `patterns` skips one that does not, so none may fail.
        let scrubber = Scrubber::new(&["x(?P<secret>y)".into()]).unwrap();
        assert_eq!(scrubber.patterns().len(), BUILT_IN.len() + 1);
        assert!(Scrubber::new(&["(unclosed".into()]).unwrap_err().to_string().contains("(unclosed"));
    }

    #[test]
    fn keyed_secrets_keep_their_key() {
        assert_eq!(scrub("login password=hunter2 ok"), "login password=[Filtered] ok");
        assert_eq!(scrub("--api-key=abc123 --port 80"), "--api-key=[Filtered] --port 80");
        assert_eq!(scrub(r#"{"token": "s3cr3t", "user": "bob"}"#), r#"{"token": "[Filtered]", "user": "bob"}"#);
        assert_eq!(scrub("DB_PASSWORD: p@ss;next"), "DB_PASSWORD: [Filtered];next");
        assert_eq!(
            scrub("AWS_SECRET_ACCESS_KEY=wJalrX GITHUB_TOKEN=ghp_x1"),
            "AWS_SECRET_ACCESS_KEY=[Filtered] GITHUB_TOKEN=[Filtered]"
        );
    }

    #[test]
    fn headers_urls_and_keys() {
        assert_eq!(scrub("Authorization: Bearer abc.def-ghi_123"), "Authorization: [Filtered] [Filtered]");
        assert_eq!(scrub("GET with Bearer abcdefghijkl"), "GET with Bearer [Filtered]");
        assert_eq!(scrub("postgres://app:tops3cret@db:5432/x"), "postgres://app:[Filtered]@db:5432/x");
        assert_eq!(scrub("dsn https://0123456789abcdef0123456789abcdef@relay/42"), "dsn https://[Filtered]@relay/42");
        assert_eq!(scrub("key AKIAIOSFODNN7EXAMPLE used"), "key [Filtered] used");
        assert_eq!(scrub("jwt eyJhbGciOi.eyJzdWIiOiIx.SflKxwRJSMeK ok"), "jwt [Filtered] ok");
    }

    #[test]
    fn ordinary_lines_are_left_alone() {
        for line in ["listening on :8080", "request 42 took 3ms", "thread 'main' panicked at src/main.rs:1:1:"] {
            assert_eq!(scrub(line), line);
        }
    }

    #[test]
    fn secret_ranges_are_what_scrub_replaces() {
        let s = Scrubber::new(&[]).unwrap();
        let text = "--password=hunter2 --port 80 Authorization: Bearer abcdefghijkl";
        let ranges = s.secret_ranges(text);
        let parts: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(parts, ["hunter2", "Bearer", "abcdefghijkl"]);
        assert!(s.secret_ranges("listening on :8080").is_empty());
    }

    #[test]
    fn user_patterns_and_json() {
        let s = Scrubber::new(&[r"card \d{4}-\d{4}".into(), r"ssn=(?P<secret>\d+)".into()]).unwrap();
        let mut v = serde_json::json!({"a": ["card 1234-5678 used", {"b": "ssn=123 x"}], "n": 3});
        s.scrub_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["[Filtered] used", {"b": "ssn=[Filtered] x"}], "n": 3}));
        assert!(Scrubber::new(&["(unclosed".into()]).is_err());
    }
}
