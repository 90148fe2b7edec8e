//! `crashwatch dump [ID] [-o FILE]`: a report's minidump copied out, as
//! `coredumpctl dump` copies a core; and [`kept_dump`], the lookup of a
//! report's minidump that `debug` and `symbolicate` share.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, anyhow};

use crate::cli::DumpArgs;
use crate::commands::Failure;
use crate::report::CrashReport;
use crate::spool::Spool;

/// A report and the minidump kept with it.
#[derive(Debug)]
pub struct KeptDump {
    pub report: CrashReport,
    pub path: PathBuf,
    /// (recorded path, preserved copy) of each file that was deleted on disk
    /// when the crash was captured.
    pub preserved: Vec<(PathBuf, PathBuf)>,
}

/// The minidump of report `id` (a unique start of it), or of the newest
/// report; exit 1 with the reason when there is none.
pub fn kept_dump(spool: &Spool, id: Option<&str>) -> Result<KeptDump, Failure> {
    let report = spool.pick(id).map_err(|e| Failure::new(1, e))?;
    let Some(file) = report.minidump_file() else {
        let why = report
            .crash
            .as_ref()
            .and_then(|c| c.dumped.minidump_error.clone())
            .or_else(|| report.snapshot.as_ref().and_then(|s| s.dumped.minidump_error.clone()))
            .unwrap_or_else(|| {
                format!(
                    "it ended with {}; minidumps are taken of crash signals, and of OOM kills with --oom-snapshot",
                    report.cause()
                )
            });
        return Err(Failure::new(1, anyhow!("report {} has no minidump: {why}", report.short_id())));
    };
    let outside =
        |name: &str| Failure::new(1, anyhow!("report {} names a file outside its directory: {name}", report.id));
    let path = spool.report_file(&report.id, &file.file).ok_or_else(|| outside(&file.file))?;
    let mut preserved = Vec::new();
    for p in report.crash.iter().flat_map(|c| &c.preserved) {
        let copy = spool.report_file(&report.id, &p.file).ok_or_else(|| outside(&p.file))?;
        preserved.push((p.original.clone(), copy));
    }
    Ok(KeptDump { report, path, preserved })
}

pub fn dump(spool: &Spool, args: &DumpArgs) -> Result<i32, Failure> {
    let kept = kept_dump(spool, args.id.as_deref())?;
    let fail = |e: anyhow::Error| Failure::new(1, e);
    let mut source = std::fs::File::open(&kept.path)
        .with_context(|| format!("failed to read the minidump {}", kept.path.display()))
        .map_err(fail)?;
    match &args.output {
        Some(output) => {
            // A minidump holds the process's stacks, secrets included: as
            // private as the spool it comes from.
            let mut write = || -> io::Result<u64> {
                let mut dest = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(output)?;
                let size = io::copy(&mut source, &mut dest)?;
                dest.sync_all()?;
                Ok(size)
            };
            let size = write().with_context(|| format!("failed to write {}", output.display())).map_err(fail)?;
            tracing::info!(
                "minidump of report {} ({size} bytes) written to {}",
                kept.report.short_id(),
                output.display()
            );
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(fail(anyhow!(
                    "refusing to write a binary minidump to a terminal: give -o FILE or redirect stdout"
                )));
            }
            let mut out = stdout.lock();
            io::copy(&mut source, &mut out)
                .and_then(|_| out.flush())
                .context("failed to write to stdout")
                .map_err(fail)?;
        }
    }
    Ok(0)
}
