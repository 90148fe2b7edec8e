//! The parsers of option values: durations, sizes, shares, levels. Each
//! error says what was given and what is accepted.

use std::time::Duration;

/// A size in bytes, or a percentage of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Bytes(u64),
    Percent(u8),
}

/// Parses a size (`2G`, as [`parse_bytes`]) or a share (`10%`, 0 to 100).
pub fn parse_share(s: &str) -> Result<Share, String> {
    match s.trim().strip_suffix('%') {
        Some(digits) => match digits.trim().parse::<u8>() {
            Ok(n @ 0..=100) => Ok(Share::Percent(n)),
            _ => Err(format!("'{s}' is not a percentage from 0% to 100%")),
        },
        None => parse_bytes(s).map(Share::Bytes),
    }
}

/// Parses `90` (seconds), `500ms`, `2s`, `1m 30s`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration ({e}): use e.g. 500ms, 2s, 1m or 1h"))
}

/// Parses `4096`, `256K`, `1M`, `2G` (powers of 1024; `KiB`, `kb` and the
/// like are accepted too).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is not a size: use a number with an optional K, M or G"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit '{other}': use K, M or G")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses whole minutes: `5` (minutes), or a duration of whole minutes
/// (`5m`, `1h`, `90m`).
pub fn parse_minutes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let minutes = match s.parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            let d =
                humantime::parse_duration(s).map_err(|_| format!("'{s}' is not a number of minutes (5, 5m, 1h)"))?;
            if d.as_secs() % 60 != 0 || d.subsec_nanos() != 0 {
                return Err(format!("'{s}' is not a whole number of minutes"));
            }
            d.as_secs() / 60
        }
    };
    if minutes == 0 {
        return Err(format!("'{s}' must be at least one minute"));
    }
    Ok(minutes)
}

/// Parses a share of a limit: `1` to `99`, with an optional `%`.
pub fn parse_percent(s: &str) -> Result<u8, String> {
    let trimmed = s.trim();
    let digits = trimmed.strip_suffix('%').unwrap_or(trimmed).trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a percentage: use a whole number from 1 to 99"));
    }
    match digits.parse::<u64>() {
        Ok(n @ 1..=99) => Ok(n as u8),
        _ => Err(format!("{s} is out of range: use a percentage of the memory limit from 1 to 99")),
    }
}

/// A log level named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

pub(super) fn parse_level(text: &str) -> Result<LogLevel, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warning,
        "error" => LogLevel::Error,
        "critical" | "fatal" => LogLevel::Critical,
        _ => return Err(format!("'{text}' is not a level: debug, info, warning, error or critical")),
    })
}
