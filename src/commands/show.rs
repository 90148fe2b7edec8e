//! `crashwatch show [ID]`: one report, for people or (`--json`) machines.

use crate::cli::ShowArgs;
use crate::commands::Failure;
use crate::spool::Spool;

pub fn show(spool: &Spool, args: &ShowArgs) -> Result<i32, Failure> {
    super::finish_left_over(spool, "show");
    let report = spool.pick(args.id.as_deref()).map_err(|e| Failure::new(1, e))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("a report always serialises") + "\n"
    } else {
        let mut text = report.render();
        // The symbolicated stacks, when the crash (or a memory snapshot
        // before an OOM kill) was caught with a dump.
        let stacks = report.stacks_file().and_then(|file| {
            let path = spool.report_dir(&report.id).join(&file.file);
            let bytes =
                std::fs::read(&path).inspect_err(|e| tracing::warn!("failed to read {}: {e}", path.display())).ok()?;
            serde_json::from_slice::<crate::symbolicate::Symbolicated>(&bytes)
                .inspect_err(|e| tracing::warn!("{} is damaged: {e}", path.display()))
                .ok()
        });
        if let Some(stacks) = stacks {
            text.push('\n');
            text.push_str(&crate::symbolicate::render_text(&stacks));
        }
        text
    };
    super::write_stdout(text.as_bytes())
}
