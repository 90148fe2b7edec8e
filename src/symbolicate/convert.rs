//! From minidump-processor's `ProcessState` to the plain [`Symbolicated`].
//!
//! Inline frames become frames of their own (innermost first, marked
//! `inlined`) because that is how Sentry and humans read them; placeholder
//! names become `None`; and rust-minidump's crash inspection, which it keeps
//! as flags scattered over `ExceptionInfo`, is turned into one sentence.

use std::collections::HashMap;

use minidump::{CodeView, Module as _};
use minidump_processor::{AdjustedAddress, ExceptionInfo, ProcessState};
use minidump_unwind::{CallStack, StackFrame};

use super::identity;
use super::model::{Frame, Module, SymbolSource, Symbolicated, Thread};
use super::provider::{ModuleFacts, ProviderReport, is_placeholder};

/// Addresses below this fault as null-pointer accesses (Linux's default
/// `vm.mmap_min_addr` is 64 KiB; the first page is the classic case).
const NULL_PAGE_LIMIT: u64 = 0x1000;
/// Bit-flip candidates below this confidence are noise.
const BIT_FLIP_MIN_CONFIDENCE: f32 = 0.5;

/// `signal_code` is the crash's `si_code` as the dump recorded it.
pub(crate) fn to_symbolicated(
    state: &ProcessState,
    facts: &[ModuleFacts],
    report: &ProviderReport,
    signal_code: Option<i32>,
) -> Symbolicated {
    let threads: Vec<Thread> = state.threads.iter().map(|t| convert_thread(t, report)).collect();

    // A module's source is the one that named its first frame, looking at
    // the crashing thread first.
    let mut order: Vec<usize> = (0..state.threads.len()).collect();
    if let Some(crashed) = state.requesting_thread {
        order.retain(|&i| i != crashed);
        order.insert(0, crashed);
    }
    let mut sources: HashMap<u64, SymbolSource> = HashMap::new();
    for frame in order.iter().flat_map(|&i| &state.threads[i].frames) {
        if let Some(module) = &frame.module {
            let base = module.base_address();
            if let Some((source, _)) = report.served.get(&(base, frame.instruction)) {
                sources.entry(base).or_insert(*source);
            }
        }
    }
    let on_stack: std::collections::HashSet<u64> = state
        .threads
        .iter()
        .flat_map(|t| &t.frames)
        .filter_map(|f| f.module.as_ref().map(|m| m.base_address()))
        .collect();

    let facts_by_base: HashMap<u64, &ModuleFacts> = facts.iter().map(|f| (f.base, f)).collect();
    let modules = state
        .modules
        .iter()
        .map(|m| {
            let base = m.base_address();
            // What was found, not only what named a frame: a module whose
            // frames all lie outside its `.dynsym` symbols is still
            // "dynsym only".
            let found = report.found.get(&base).copied();
            let symbols = match sources.get(&base) {
                Some(source @ (SymbolSource::Breakpad | SymbolSource::Http)) => *source,
                _ => found.unwrap_or(if on_stack.contains(&base) { SymbolSource::None } else { SymbolSource::Unread }),
            };
            let file_problem = facts_by_base.get(&base).and_then(|f| f.located.problem.clone());
            // Say why a module on the stacks has no names, if we know.
            let problem = file_problem.or_else(|| {
                (symbols == SymbolSource::None && on_stack.contains(&base))
                    .then(|| report.load_errors.get(&base).cloned())
                    .flatten()
            });
            Module {
                code_file: m.code_file().into_owned(),
                code_id: match &m.codeview_info {
                    Some(CodeView::Elf(elf)) if elf.build_id.iter().any(|b| *b != 0) => {
                        Some(identity::hex(&elf.build_id))
                    }
                    _ => m.code_identifier().map(|id| id.as_str().to_owned()),
                },
                debug_id: m.debug_identifier().map(|id| id.breakpad().to_string()),
                base,
                size: m.size(),
                image_base: Some(facts_by_base.get(&base).map_or(base, |f| f.image_base)),
                symbols,
                problem,
            }
        })
        .collect();

    Symbolicated {
        cpu: state.system_info.cpu.to_string(),
        os: state.system_info.os.long_name().into_owned(),
        crash_reason: state.exception_info.as_ref().map(|e| e.reason.to_string()),
        crash_address: state.exception_info.as_ref().map(|e| e.address.0),
        crashing_thread: state.requesting_thread,
        diagnosis: state.exception_info.as_ref().and_then(|e| match signal_code {
            // Sent with kill, tgkill, raise…: nothing faulted, and the
            // "address" is the sender's pid and uid.
            Some(code) if code <= 0 && is_fault_signal(&e.reason.to_string()) => Some(format!(
                "the signal was sent (si_code {code}: {}), not raised by a fault",
                if code == 0 { "kill" } else { "tkill, tgkill or sigqueue" }
            )),
            _ => diagnose(e, state),
        }),
        threads,
        modules,
    }
}

fn convert_thread(stack: &CallStack, report: &ProviderReport) -> Thread {
    let mut frames = Vec::with_capacity(stack.frames.len());
    for frame in &stack.frames {
        let module = frame.module.as_ref();
        let module_name = module.map(|m| basename(&m.code_file()).to_owned());
        let module_base = module.map(|m| m.base_address());
        for inline in &frame.inlines {
            frames.push(Frame {
                instruction: frame.instruction,
                module: module_name.clone(),
                module_base,
                function: Some(inline.function_name.clone()).filter(|n| !n.is_empty()),
                symbol: None,
                function_address: None,
                file: inline.source_file_name.clone(),
                line: inline.source_line,
                inlined: true,
                trust: "inlined".to_owned(),
            });
        }
        let symbol = module_base.and_then(|base| report.served.get(&(base, frame.instruction))?.1.clone());
        frames.push(physical_frame(frame, module_name, module_base, symbol));
    }
    Thread { tid: stack.thread_id, name: stack.thread_name.clone(), frames }
}

fn physical_frame(
    frame: &StackFrame,
    module: Option<String>,
    module_base: Option<u64>,
    symbol: Option<String>,
) -> Frame {
    let named = frame.function_name.as_deref().is_some_and(|n| !n.is_empty() && !is_placeholder(n));
    Frame {
        instruction: frame.instruction,
        module,
        module_base,
        function: frame.function_name.clone().filter(|_| named),
        symbol: symbol.filter(|_| named),
        function_address: frame.function_base.filter(|_| named),
        file: frame.source_file_name.clone().filter(|_| named),
        line: frame.source_line.filter(|_| named),
        inlined: false,
        trust: frame.trust.as_str().to_owned(),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Whether a crash reason (`SIGSEGV / …`) names a signal a fault raises.
fn is_fault_signal(reason: &str) -> bool {
    ["SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"].iter().any(|s| reason.starts_with(s))
}

/// One sentence from rust-minidump's analysis of the crashing instruction.
fn diagnose(info: &ExceptionInfo, state: &ProcessState) -> Option<String> {
    let reason = info.reason.to_string();
    let memory_fault = reason.starts_with("SIGSEGV") || reason.starts_with("SIGBUS");
    let mut found = Vec::new();

    match &info.adjusted_address {
        Some(AdjustedAddress::NullPointerWithOffset(offset)) if offset.0 == 0 => {
            found.push("null pointer dereference".to_owned());
        }
        Some(AdjustedAddress::NullPointerWithOffset(offset)) => {
            found.push(format!("null pointer dereference (field at offset {:#x} of a null pointer)", offset.0))
        }
        Some(AdjustedAddress::NonCanonical(address)) => found.push(format!(
            "non-canonical address {:#x}: a corrupted pointer (the kernel reports such faults at 0x0)",
            address.0
        )),
        None => {}
    }
    let accesses = || info.memory_access_list.iter().flat_map(|l| l.iter());
    if found.is_empty()
        && memory_fault
        && (info.address.0 < NULL_PAGE_LIMIT || accesses().any(|a| a.address_info.is_likely_null_pointer_dereference))
    {
        found.push("null pointer dereference".to_owned());
    }
    if let Some(guard) = accesses().find(|a| a.address_info.is_likely_guard_page) {
        found.push(format!("access to a guard page at {:#x}: likely a stack overflow", guard.address_info.address));
    }

    // A fault whose instruction pointer is in no module: a call or jump
    // through a bad pointer (or a return through a smashed stack).
    let crashing_frame = state.requesting_thread.and_then(|i| state.threads.get(i)).and_then(|t| t.frames.first());
    if let Some(frame) = crashing_frame
        && frame.module.is_none()
        && memory_fault
    {
        found.push(format!("bad jump: the instruction pointer {:#x} is outside any loaded module", frame.instruction));
    }

    if let Some(flip) = info
        .possible_bit_flips
        .iter()
        .filter(|b| b.confidence.unwrap_or(0.0) >= BIT_FLIP_MIN_CONFIDENCE)
        .max_by(|a, b| a.confidence.unwrap_or(0.0).total_cmp(&b.confidence.unwrap_or(0.0)))
    {
        found.push(format!(
            "possible bit flip: the faulting value is one bit away from the valid address {}{:#x} (confidence {:.2})",
            flip.source_register.map(|r| format!("{r}=")).unwrap_or_default(),
            flip.address.0,
            flip.confidence.unwrap_or(0.0)
        ));
    }
    for inconsistency in &info.inconsistencies {
        found.push(format!("inconsistent crash report: {inconsistency}"));
    }
    (!found.is_empty()).then(|| found.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basenames() {
        assert_eq!(basename("/usr/lib/libc.so.6"), "libc.so.6");
        assert_eq!(basename("c:\\x\\y.dll"), "y.dll");
        assert_eq!(basename("plain"), "plain");
    }
}
