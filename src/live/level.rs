//! The level of a structured log line: JSON (`level`/`severity`/`lvl`, the
//! message in `msg`/`message`), logfmt (`level=error msg=…`), a syslog or
//! journald `<N>` prefix, or a leading `ERROR`/`CRITICAL`-style word.

use std::borrow::Cow;

/// Log levels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    /// Parses a level name as loggers write it (`ERROR`, `err`, `fatal`, `warn`…).
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "trace" | "debug" | "dbg" | "verbose" => Level::Debug,
            "info" | "information" | "notice" | "inf" => Level::Info,
            "warn" | "warning" | "wrn" => Level::Warning,
            "error" | "err" | "eror" | "severe" => Level::Error,
            "critical" | "crit" | "fatal" | "panic" | "alert" | "emerg" | "emergency" | "dpanic" => Level::Critical,
            _ => return None,
        })
    }

    /// Sentry's name of the level for an event.
    pub fn sentry(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "fatal",
        }
    }
}

/// A line whose level is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leveled<'a> {
    pub level: Level,
    pub message: Cow<'a, str>,
    /// The logger's name, when the line names one.
    pub logger: Option<String>,
}

/// The level and message of `line`, if it says its level.
pub fn parse(line: &str) -> Option<Leveled<'_>> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        return json(trimmed);
    }
    if let Some(rest) = trimmed.strip_prefix('<')
        && let Some((n, message)) = rest.split_once('>')
        && let Ok(n) = n.parse::<u8>()
    {
        // `<PRI>`: the severity is the low three bits.
        let level = match n & 7 {
            0..=2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        };
        return Some(Leveled { level, message: Cow::Borrowed(message.trim()), logger: None });
    }
    if let Some(found) = logfmt(trimmed) {
        return Some(found);
    }
    word(trimmed)
}

fn json(line: &str) -> Option<Leveled<'_>> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let level =
        ["level", "severity", "lvl", "log.level"].iter().find_map(|k| object.get(*k)).and_then(|v| match v {
            serde_json::Value::String(s) => Level::parse(s),
            // pino/bunyan: 50 error, 60 fatal.
            serde_json::Value::Number(n) => n.as_u64().map(|n| match n {
                60.. => Level::Critical,
                50.. => Level::Error,
                40.. => Level::Warning,
                30.. => Level::Info,
                _ => Level::Debug,
            }),
            _ => None,
        })?;
    let message = ["msg", "message", "error"]
        .iter()
        .find_map(|k| object.get(*k).and_then(|v| v.as_str()))
        .map(|m| Cow::Owned(m.to_owned()))
        .unwrap_or(Cow::Borrowed(line));
    let logger = ["logger", "logger_name", "name", "target"]
        .iter()
        .find_map(|k| object.get(*k).and_then(|v| v.as_str()))
        .map(str::to_owned);
    Some(Leveled { level, message, logger })
}

/// `key=value key="quoted value"` pairs.
fn logfmt_pairs(line: &str) -> Vec<(&str, Cow<'_, str>)> {
    let mut pairs = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = &rest[..eq];
        if key.is_empty() || key.contains(char::is_whitespace) {
            // Not logfmt from here: skip the word.
            match rest.find(' ') {
                Some(sp) => {
                    rest = &rest[sp..];
                    continue;
                }
                None => break,
            }
        }
        let after = &rest[eq + 1..];
        if let Some(quoted) = after.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else { break };
            let value = &quoted[..end];
            let value =
                if value.contains('\\') { Cow::Owned(value.replace("\\\"", "\"")) } else { Cow::Borrowed(value) };
            pairs.push((key, value));
            rest = &quoted[end + 1..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            pairs.push((key, Cow::Borrowed(&after[..end])));
            rest = &after[end..];
        }
    }
    pairs
}

fn logfmt(line: &str) -> Option<Leveled<'_>> {
    if !line.contains("level=") && !line.contains("lvl=") && !line.contains("severity=") {
        return None;
    }
    let pairs = logfmt_pairs(line);
    let level =
        pairs.iter().find(|(k, _)| matches!(*k, "level" | "lvl" | "severity")).and_then(|(_, v)| Level::parse(v))?;
    let message = pairs
        .iter()
        .find(|(k, _)| matches!(*k, "msg" | "message"))
        .map(|(_, v)| Cow::Owned(v.to_string()))
        .unwrap_or(Cow::Borrowed(line));
    let logger =
        pairs.iter().find(|(k, _)| matches!(*k, "logger" | "module" | "component")).map(|(_, v)| v.to_string());
    Some(Leveled { level, message, logger })
}

/// `ERROR: …`, `[ERROR] …`, `CRITICAL …`, also after a timestamp of up to
/// three words (`2026-01-02 10:00:00,123 ERROR …`).
fn word(line: &str) -> Option<Leveled<'_>> {
    for (i, token) in line.split_whitespace().take(4).enumerate() {
        let bare = token.trim_matches(|c: char| matches!(c, '[' | ']' | ':' | '(' | ')'));
        let shouting = bare.len() >= 4 && bare.bytes().all(|b| b.is_ascii_uppercase());
        if shouting && let Some(level) = Level::parse(bare) {
            let start = line.find(token).map_or(0, |p| p + token.len());
            return Some(Leveled { level, message: Cow::Borrowed(line[start..].trim_start()), logger: None });
        }
        // Only timestamp-like words may come before the level.
        if i < 3 && !token.bytes().any(|b| b.is_ascii_digit()) {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(line: &str) -> Option<(Level, String)> {
        parse(line).map(|l| (l.level, l.message.into_owned()))
    }

    #[test]
    fn each_shape_gives_its_level_and_message() {
        assert_eq!(
            level(r#"{"level":"error","msg":"db down","logger":"pool"}"#),
            Some((Level::Error, "db down".into()))
        );
        assert_eq!(level(r#"{"severity":"CRITICAL","message":"disk"}"#), Some((Level::Critical, "disk".into())));
        assert_eq!(level(r#"{"level":50,"msg":"pino"}"#), Some((Level::Error, "pino".into())));
        assert_eq!(
            level(r#"ts=1 level=error msg="payment failed: card 7" user=3"#),
            Some((Level::Error, "payment failed: card 7".into()))
        );
        assert_eq!(level("<3>kernel said no"), Some((Level::Error, "kernel said no".into())));
        assert_eq!(level("<6>fine"), Some((Level::Info, "fine".into())));
        assert_eq!(level("ERROR: cannot open x"), Some((Level::Error, "cannot open x".into())));
        assert_eq!(level("2026-01-02 10:00:00,123 CRITICAL boom"), Some((Level::Critical, "boom".into())));
        assert_eq!(level("[WARN] slow"), Some((Level::Warning, "slow".into())));
    }

    #[test]
    fn ordinary_text_has_no_level() {
        assert_eq!(level("user said error is fine"), None);
        assert_eq!(level("the Error: was handled"), None);
        assert_eq!(level("{not json"), None);
        assert_eq!(level(r#"{"msg":"no level"}"#), None);
        assert_eq!(level("level=bogus msg=x"), None);
    }
}
