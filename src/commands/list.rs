//! `crashwatch list`: the reports in the spool, newest first, one line each
//! (like `coredumpctl list`).

use crate::cli::ListArgs;
use crate::commands::Failure;
use crate::report;
use crate::spool::Spool;

pub fn list(spool: &Spool, args: &ListArgs) -> Result<i32, Failure> {
    let reports = spool.reports().map_err(|e| Failure::new(1, e))?;
    let mut out = String::new();
    if args.json {
        for r in &reports {
            out.push_str(&serde_json::to_string(r).expect("a report always serialises"));
            out.push('\n');
        }
    } else if reports.is_empty() {
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
