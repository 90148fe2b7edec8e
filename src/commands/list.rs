//! `crashwatch list`: the reports in the spool, newest first, one line each
//! (like `coredumpctl list`).

use std::io::Write;

use crate::cli::ListArgs;
use crate::commands::Failure;
use crate::report;
use crate::spool::Spool;

pub fn list(spool: &Spool, args: &ListArgs) -> Result<i32, Failure> {
    super::finish_left_over(spool, "list");
    let mut out = String::new();
    // Only what the table shows (and the order) is read of every report.
    let reports = spool.heads().map_err(|e| Failure::new(1, e))?;
    if args.json {
        // One report at a time: thousands never need to be in memory at once.
        let mut stdout = std::io::stdout().lock();
        let Some(store) = spool.store().map_err(|e| Failure::new(1, e))? else { return Ok(0) };
        for head in &reports {
            let report = match store.load(&head.id) {
                Ok(Some(report)) => report,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("skipping a damaged report: {}", crate::errors::Chain(&e));
                    continue;
                }
            };
            let mut line = serde_json::to_vec(&report).expect("a report always serialises");
            line.push(b'\n');
            // A closed stdout (`crashwatch list --json | head -1`) ends the
            // listing; any other failure to write (a full disk) is an error.
            match stdout.write_all(&line) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => {
                    let e = anyhow::Error::new(e).context("failed to write to stdout");
                    return Err(Failure::new(crate::exit::FAILURE, e));
                }
            }
        }
        return Ok(0);
    }
    if reports.is_empty() {
        eprintln!("crashwatch: no reports in {}", spool.root().display());
    } else {
        out.push_str(&format!(
            "{:<23}  {:>7}  {:<10}  {:<7}  {:<12}  {}\n",
            "TIME", "PID", "CAUSE", "KIND", "ID", "PROGRAM"
        ));
        for r in &reports {
            out.push_str(&format!(
                "{:<23}  {:>7}  {:<10}  {:<7}  {:<12}  {}\n",
                report::timestamp(r.ended_at),
                r.program.pid,
                r.cause(),
                r.kind.name(),
                r.short_id(),
                r.program.exe.display()
            ));
        }
    }
    super::write_stdout(out.as_bytes())
}
