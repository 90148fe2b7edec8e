//! How a report is to be sent ([`Intent`], kept beside it as its
//! `deliver.json` until it is queued), and why one is not.

use serde::{Deserialize, Serialize};

use crate::report::CrashReport;
use crate::sentry::{MinidumpProcessing, event};

/// How a report is to be sent: the settings of the crashwatch that caught
/// it, kept with the report until it is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// `--scrub` patterns, beyond the built-in ones.
    #[serde(default)]
    pub scrub: Vec<String>,
    /// `host` or `server`; absent: the minidump is not sent.
    #[serde(default)]
    pub minidump: Option<String>,
    #[serde(default)]
    pub report_exit_codes: bool,
    #[serde(default)]
    pub group_window_ms: u64,
    #[serde(default)]
    pub max_per_hour: Option<u32>,
}

impl Intent {
    /// The settings of `crashwatch run` with `config`.
    pub fn of(config: &crate::config::RunConfig) -> Intent {
        Intent {
            scrub: config.scrub.clone(),
            minidump: config.minidump_upload.map(|m| {
                match m {
                    MinidumpProcessing::Host => "host",
                    MinidumpProcessing::Server => "server",
                }
                .to_owned()
            }),
            report_exit_codes: config.report_exit_codes,
            group_window_ms: u64::try_from(config.group_window.as_millis()).unwrap_or(u64::MAX),
            max_per_hour: config.max_reports_per_hour,
        }
    }

    pub(super) fn minidump(&self) -> Option<MinidumpProcessing> {
        match self.minidump.as_deref() {
            Some("server") => Some(MinidumpProcessing::Server),
            Some(_) => Some(MinidumpProcessing::Host),
            None => None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an intent always serialises")
    }
}

/// Why `report` is not sent (with `target`: whether there is a DSN and an
/// outbox); `None` when it would be queued.
pub(super) fn kept_local_because(target: bool, report: &CrashReport, intent: &Intent) -> Option<String> {
    if !target {
        Some("not sent: no DSN (--dsn or SENTRY_DSN)".into())
    } else if !event::should_send(report, intent.report_exit_codes) {
        Some(match report.kind {
            crate::report::Kind::Stopped => "not sent: an orderly stop is not a crash".into(),
            _ => "not sent: a plain non-zero exit is sent only with --report-exit-codes".into(),
        })
    } else {
        None
    }
}
