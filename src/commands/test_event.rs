//! `crashwatch test`: sends one test event to the DSN, straight to Relay
//! (not through the outbox), and reports Relay's answer. The check that
//! catches a DSN whose project or key was removed before a crash does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::cli::TestArgs;
use crate::commands::Failure;
use crate::errors::Chain;
use crate::sentry::{Envelope, SystemClock, Uploader, UploaderConfig};

pub fn test(args: &TestArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(2, anyhow::anyhow!("no DSN to test: give --dsn or set SENTRY_DSN")))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let event = json!({
        "level": "info",
        "platform": "native",
        "logger": "crashwatch",
        "server_name": host,
        "logentry": {"formatted": format!("crashwatch test event from {host}")},
        "tags": {"crashwatch_test": "true"},
    });
    let fail = |e: &(dyn std::error::Error + 'static)| Failure::new(1, anyhow::anyhow!("{}", Chain(e)));
    let envelope = Envelope::new(id.parse().map_err(|e| fail(&e))?, event).map_err(|e| fail(&e))?;
    let body = envelope.to_vec(&dsn, SystemTime::now()).map_err(|e| fail(&e))?;
    let uploader =
        Uploader::new(dsn.clone(), UploaderConfig::default(), Arc::new(SystemClock)).map_err(|e| fail(&e))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(&e))?;
    match runtime.block_on(uploader.send(body, Duration::from_secs(args.timeout))) {
        Ok(accepted) => {
            let text = format!(
                "OK: {} accepted test event {id} (HTTP {}). Relay checks the project's settings after answering, \
                 so look for the event in Sentry to be sure it was kept.\n",
                dsn.envelope_url(),
                accepted.status
            );
            super::write_stdout(text.as_bytes())
        }
        Err(e) => {
            let text = format!("FAIL: {} did not accept the test event: {}\n", dsn.envelope_url(), Chain(&e));
            super::write_stdout(text.as_bytes())?;
            Ok(1)
        }
    }
}
