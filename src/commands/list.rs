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
    if args.json {
        for r in &spool.reports().map_err(|e| Failure::new(1, e))? {
            out.push_str(&serde_json::to_string(r).expect("a report always serialises"));
            out.push('\n');
        }
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        return Ok(0);
    }
    // Only what the table shows is read of each report.
    let reports = spool.heads().map_err(|e| Failure::new(1, e))?;
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
    // A closed stdout (`crashwatch list | head -1`) is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}
