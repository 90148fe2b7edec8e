//! `crashwatch doctor`'s look at the spool: whether it is safe and writable
//! (without creating it: doctor creates nothing), what a crashwatch that was
//! killed left there (finished now, and said), and how much it uses against
//! its retention limits.

use std::path::Path;
use std::sync::Arc;

use super::doctor::{Check, Verdict};
use crate::cli::DoctorArgs;
use crate::commands::delivery::{self, Delivery, Intent};
use crate::commands::recover::{self, Recovered};
use crate::errors::Chain;
use crate::metrics::Metrics;
use crate::report::human_bytes;
use crate::sentry::deliver;
use crate::sentry::scrub::Scrubber;
use crate::spool::Spool;

const NAME: &str = "spool";

pub(super) fn check(root: &Path, args: &DoctorArgs) -> Vec<Check> {
    let spool = match Spool::open(root) {
        Ok(spool) => spool,
        Err(e) => {
            let text = format!("{}; reports could not be kept", Chain(&e));
            return vec![Check { verdict: Verdict::Fail, name: NAME, text }];
        }
    };
    let Some(dir) = spool.dir() else { return vec![creatable(root)] };
    if nix::unistd::access(root, nix::unistd::AccessFlags::W_OK).is_err() {
        let text = format!("{} is not writable: reports could not be kept", root.display());
        return vec![Check { verdict: Verdict::Fail, name: NAME, text }];
    }
    let mut checks: Vec<Check> = left_over(&spool, args).into_iter().collect();
    let limits = crate::config::retention(&args.retention);
    let usage = crate::spool::retention::survey_usage(&spool);
    let outbox = deliver::existing_outbox(dir, None).ok().flatten();
    let (waiting, outbox_bytes) =
        outbox.as_ref().and_then(|o| Some((o.pending().ok()?.len(), o.total_bytes().ok()?))).unwrap_or((0, 0));
    checks.push(match (usage, dir.filesystem()) {
        (Ok((reports, used)), Ok((size, free))) => {
            let limits = limits.resolve(size);
            let over = used > limits.max_use || free < limits.keep_free;
            let text = format!(
                "{} is writable ({reports} reports kept, {waiting} waiting to be sent): reports use {} of \
                 --spool-max-use {}, the outbox {}; {} free, --spool-keep-free {}; reports older than {} are \
                 deleted{}",
                root.display(),
                human_bytes(used),
                human_bytes(limits.max_use),
                human_bytes(outbox_bytes),
                human_bytes(free),
                human_bytes(limits.keep_free),
                humantime::format_duration(limits.max_age),
                if over { "; over its limits: the next report or `crashwatch send` prunes it" } else { "" }
            );
            Check { verdict: if over { Verdict::Warn } else { Verdict::Ok }, name: NAME, text }
        }
        (Err(e), _) => Check { verdict: Verdict::Warn, name: NAME, text: Chain(&e).to_string() },
        (_, Err(e)) => Check { verdict: Verdict::Warn, name: NAME, text: format!("{}: {e}", root.display()) },
    });
    checks
}

/// A spool that does not exist yet: whether `run` could make it.
fn creatable(root: &Path) -> Check {
    let existing = root.ancestors().skip(1).find(|a| a.exists()).unwrap_or(Path::new("/"));
    if nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_ok() {
        let text = format!("{} does not exist yet; `crashwatch run` creates it (mode 0700)", root.display());
        Check { verdict: Verdict::Ok, name: NAME, text }
    } else {
        let text = format!(
            "{} does not exist, and cannot be created: {} is not writable; choose another with --spool-dir",
            root.display(),
            existing.display()
        );
        Check { verdict: Verdict::Fail, name: NAME, text }
    }
}

/// Reports and dumps a killed crashwatch left: finished now (and queued with
/// `--dsn`), and said, since something went wrong before. `None` when
/// nothing was left.
fn left_over(spool: &Spool, args: &DoctorArgs) -> Option<Check> {
    let found = match recover::survey(spool) {
        Ok(found) => found,
        Err(e) => return Some(Check { verdict: Verdict::Warn, name: NAME, text: Chain(&e).to_string() }),
    };
    if !found.left_over() {
        return None;
    }
    let delivery = delivery_for(spool, args);
    let by = format!("`crashwatch doctor` (pid {})", std::process::id());
    let text = match recover::recover(spool, delivery.as_ref(), &by) {
        Ok(done) => describe(&found, &done, delivery.is_some()),
        Err(e) => format!("{}; finishing them failed: {}", describe_found(&found), Chain(&e)),
    };
    Some(Check { verdict: Verdict::Warn, name: NAME, text })
}

fn delivery_for(spool: &Spool, args: &DoctorArgs) -> Option<Delivery> {
    let dsn = super::parse_dsn(args.dsn.as_deref()).ok().flatten()?;
    let options = delivery::Options {
        max_bytes: None,
        flush_timeout: std::time::Duration::ZERO,
        send_directly: true,
        scrubber: Scrubber::new(&[]).ok()?,
        intent: Intent { minidump: Some("host".into()), ..Intent::default() },
    };
    Some(Delivery::new(Some(dsn), Some(spool), options, Arc::new(Metrics::default())))
}

fn describe_found(found: &Recovered) -> String {
    let parts = [
        (found.dumps, "dump(s) left by a crashwatch that is gone"),
        (found.unfinished, "report(s) unfinished"),
        (found.to_queue, "report(s) not yet queued for Sentry"),
    ];
    let parts: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    format!("a crashwatch was killed while filing: {}", parts.join(", "))
}

fn describe(found: &Recovered, done: &Recovered, queued: bool) -> String {
    let then = if queued {
        format!("finished {} and queued {} of them now", done.finished, done.queued)
    } else {
        format!(
            "finished {} of them now; `crashwatch send` (or doctor --dsn) queues and sends those meant for Sentry",
            done.finished
        )
    };
    format!("{}; {then}", describe_found(found))
}
