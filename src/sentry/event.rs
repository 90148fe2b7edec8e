//! A [`CrashReport`] (with its symbolicated stacks, when there is a dump) as
//! a Sentry event, and the envelope that carries it with the minidump and the
//! log tail.
//!
//! The event is a native crash event as Relay expects one: `level: fatal`,
//! one exception whose mechanism says how the child died (`signalhandler`,
//! `oom`, `panic`, `exit`) with `handled: false` and the signal in
//! `meta.signal`; every thread, the crashed one's frames on the exception
//! too, oldest first (Sentry's order; the symbolicator's is innermost first);
//! `debug_meta` ELF images with the build-id as `code_id` and `debug_id`;
//! contexts; tags; the log tail as breadcrumbs. An OOM kill has no crash
//! of its own to dump: when `--oom-snapshot` took a minidump of the child
//! before, its stacks stand in, and the exception and the `crashwatch`
//! context say when they were taken. It is built as JSON rather
//! than with sentry-types' `Event`, whose frame and image types lack fields
//! native events need (`trust`, `instruction_addr_adjustment`, `code_file`).

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::errors::Chain;
use crate::logs::Stream;
use crate::memory::sampler::Memory;
use crate::process::ChildStatus;
use crate::process::signals;
use crate::report::{self, CrashReport, Kind};
use crate::sentry::envelope::mark_dropped;
use crate::sentry::minidump_scrub;
use crate::sentry::scrub::Scrubber;
use crate::sentry::throttle::Summary;
use crate::sentry::{Attachment, AttachmentSource, Envelope, EnvelopeError, EventId, MinidumpProcessing};
use crate::story;
use crate::symbolicate::{self, Symbolicated};

/// The name Sentry shows for the minidump.
pub const MINIDUMP_FILENAME: &str = "minidump.dmp";

/// Lines of the log tail sent as breadcrumbs (the attachment has them all).
const BREADCRUMBS: usize = 100;

/// Whether a report is worth sending: crashes, OOM kills and panics always;
/// a plain non-zero exit only when asked; an orderly stop never.
pub fn should_send(report: &CrashReport, report_exit_codes: bool) -> bool {
    match report.kind {
        Kind::Signal | Kind::Oom | Kind::Panic => true,
        Kind::Exit => report_exit_codes,
        Kind::Stopped => false,
    }
}

/// The envelope of `report`, whose files are in `report_dir`, scrubbed of
/// secrets; with the minidump (scrubbed too, see [`minidump_scrub`]) when
/// `minidump` says how Sentry is to treat it.
pub fn envelope(
    report: &CrashReport,
    report_dir: &Path,
    stacks: Option<&Symbolicated>,
    scrubber: &Scrubber,
    minidump: Option<MinidumpProcessing>,
) -> Result<Envelope, EnvelopeError> {
    let id: EventId = report.id.parse()?;
    let mut event = event(report, stacks);
    scrubber.scrub_json(&mut event);
    let mut dump_attachment = None;
    if let (Some(processing), Some(dump)) = (minidump, report.minidump_file()) {
        let path = report_dir.join(&dump.file);
        match minidump_scrub::scrub(&path, scrubber) {
            Ok(rewrite) => {
                let source = AttachmentSource::Rewritten(path, rewrite);
                dump_attachment = Some(Attachment::minidump(MINIDUMP_FILENAME, source, processing));
            }
            Err(e) => {
                // Better no minidump than one that carries the secrets out.
                let why = format!("not sent: it could not be scrubbed of secrets ({})", Chain(&e));
                tracing::warn!(report = %report.short_id(), "the minidump is {why}");
                mark_dropped(&mut event, MINIDUMP_FILENAME, "event.attachment", true, dump.size, &why);
            }
        }
    }
    let mut envelope = Envelope::new(id, event)?;
    if let Some(attachment) = dump_attachment {
        envelope.add_attachment(attachment)?;
    }
    if !report.log_tail.is_empty() {
        let log = log_text(report);
        let log = scrubber.scrub(&log).into_owned();
        envelope.add_attachment(Attachment::text("log-tail.txt", AttachmentSource::Bytes(log.into_bytes())))?;
    }
    // A runtime's own crash report (hs_err_pid*.log), scrubbed as the log
    // tail is; one that cannot be read any more is left out.
    for attachment in &report.attachments {
        if let Ok(bytes) = std::fs::read(report_dir.join(&attachment.file)) {
            let text = scrubber.scrub(&String::from_utf8_lossy(&bytes)).into_owned();
            envelope.add_attachment(Attachment::text(&attachment.name, AttachmentSource::Bytes(text.into_bytes())))?;
        }
    }
    Ok(envelope)
}

/// The envelope of one crash-loop summary: the repeats of a report sent in
/// full, counted instead of sent. Its own group in Sentry (fingerprinted by
/// the signature), with the count and the first report's id in `extra`.
pub fn summary_envelope(summary: &Summary) -> Result<Envelope, EnvelopeError> {
    let id = EventId::new_v4();
    let rfc3339 = |t: std::time::SystemTime| {
        time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    let span = summary.last_seen.duration_since(summary.first_seen).unwrap_or_default();
    let span = humantime::format_duration(std::time::Duration::from_secs(span.as_secs()));
    let times = if summary.repeats == 1 { "time" } else { "times" };
    let message = format!(
        "{}: {} happened {} more {times} in {span} after the report sent in full (event {}); \
         the repeats were kept on the host, not sent",
        summary.origin.program, summary.title, summary.repeats, summary.first_report
    );
    let mut event = json!({
        "event_id": id.to_string(),
        "timestamp": rfc3339(summary.last_seen),
        "platform": "native",
        "level": "error",
        "logger": "crashwatch",
        "server_name": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "logentry": {"formatted": message},
        "fingerprint": ["crashwatch-repeats", summary.key],
        "tags": {"program": summary.origin.program, "kind": "repeats"},
        "extra": {
            "repeats": summary.repeats,
            "first_report": summary.first_report,
            "signature": summary.key,
            "first_seen": rfc3339(summary.first_seen),
            "last_seen": rfc3339(summary.last_seen),
        },
    });
    let object = event.as_object_mut().expect("an object");
    if let Some(release) = &summary.origin.release {
        object.insert("release".into(), json!(release));
    }
    if let Some(environment) = &summary.origin.environment {
        object.insert("environment".into(), json!(environment));
    }
    Envelope::new(id, event)
}

/// The event JSON.
pub fn event(report: &CrashReport, stacks: Option<&Symbolicated>) -> Value {
    let crashed_frames = stacks.and_then(crashed_thread_frames);
    let platform = match (&report.panic, &report.crash) {
        (Some(panic), None) => panic.runtime.platform(),
        _ => "native",
    };
    let mut event = json!({
        "event_id": report.id,
        "timestamp": report.ended_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "platform": platform,
        "level": "fatal",
        "logger": "crashwatch",
        "server_name": report.hostname,
        "exception": {"values": exceptions(report, crashed_frames)},
        "contexts": contexts(report, stacks),
        "tags": tags(report),
        "extra": {"argv": report.program.argv, "report_id": report.id},
    });
    let object = event.as_object_mut().expect("an object");
    if let Some(release) = &report.release {
        object.insert("release".into(), json!(release));
    }
    if let Some(environment) = &report.environment {
        object.insert("environment".into(), json!(environment));
    }
    // Relay drops an empty list, so none is sent.
    if !report.log_tail.is_empty() {
        object.insert("breadcrumbs".into(), json!({"values": breadcrumbs(report)}));
    }
    if let Some(stacks) = stacks {
        object.insert("threads".into(), json!({"values": threads(stacks)}));
        object.insert("debug_meta".into(), json!({"images": images(stacks)}));
    }
    event
}

/// The exceptions, oldest cause first (Sentry's order); the last one is how
/// the child died.
fn exceptions(report: &CrashReport, crashed_frames: Option<Value>) -> Vec<Value> {
    let mut values = Vec::new();
    let (kind, value, mechanism, story_frames) = match (&report.panic, report.kind) {
        (Some(panic), _) => {
            for cause in panic.chained.iter().rev() {
                values.push(json!({
                    "type": exception_type(cause),
                    "value": cause.value,
                    "stacktrace": story_stacktrace(cause),
                    "mechanism": {"type": "chained", "handled": false},
                }));
            }
            (exception_type(panic), panic.value.clone(), "panic", story_stacktrace(panic))
        }
        (None, Kind::Oom) => {
            let mut value = oom_value(report.memory.as_ref());
            if let Some(snapshot) = &report.snapshot {
                value.push_str(&format!("; stacks from a snapshot {}", snapshot.headline(report.ended_at)));
            }
            ("OOM".to_string(), value, "oom", Value::Null)
        }
        (None, _) => match (&report.crash, report.status) {
            (Some(crash), _) => (crash.signal_name.clone(), crash.headline(), "signalhandler", Value::Null),
            (None, ChildStatus::Signaled { signal, .. }) => {
                (signals::name(signal), format!("killed by {}", signals::name(signal)), "signalhandler", Value::Null)
            }
            (None, ChildStatus::Exited(code)) => {
                ("NonZeroExit".into(), format!("exited with code {code}"), "exit", Value::Null)
            }
        },
    };
    let mut mechanism = json!({"type": mechanism, "handled": false});
    let signal = report.crash.as_ref().map(|c| (c.signal, Some(c.code))).or(match report.status {
        ChildStatus::Signaled { signal, .. } => Some((signal, None)),
        ChildStatus::Exited(_) => None,
    });
    if let Some((number, code)) = signal {
        let mut meta = json!({"number": number, "name": signals::name(number)});
        if let Some(code) = code {
            meta["code"] = json!(code);
            if let Some(name) = signals::code_name(number, code) {
                meta["code_name"] = json!(name);
            }
        }
        mechanism["meta"] = json!({"signal": meta});
    }
    let mut exception = json!({"type": kind, "value": value, "mechanism": mechanism});
    // A minidump's crashed thread is the most exact native stack there is;
    // the parsed story's frames stand in where there is no dump, and win
    // when they are the program's own (Python, Java, JavaScript source
    // frames: the dump then shows the interpreter, in `threads`).
    let source_frames = report
        .panic
        .as_ref()
        .is_some_and(|p| p.runtime.platform() != "native" && p.frames.iter().any(|f| f.filename.is_some()));
    let stacktrace = if source_frames { story_frames } else { crashed_frames.unwrap_or(story_frames) };
    if !stacktrace.is_null() {
        exception["stacktrace"] = stacktrace;
    }
    if let Some(crash) = &report.crash {
        exception["thread_id"] = json!(crash.dumped.tid);
    } else if let Some(snapshot) = report.snapshot.as_ref().filter(|_| !exception["stacktrace"].is_null()) {
        exception["thread_id"] = json!(snapshot.dumped.tid);
    }
    values.push(exception);
    values
}

pub fn exception_type(story: &story::Crash) -> String {
    if story.kind.is_empty() { format!("{:?}", story.runtime) } else { story.kind.clone() }
}

pub fn story_stacktrace(story: &story::Crash) -> Value {
    if story.frames.is_empty() {
        return Value::Null;
    }
    let frames: Vec<Value> = story
        .frames
        .iter()
        .map(|f| {
            let mut frame = Map::new();
            let mut put = |k: &str, v: Value| {
                if !v.is_null() {
                    frame.insert(k.into(), v);
                }
            };
            put("function", json!(f.function));
            put("module", json!(f.module));
            put("package", json!(f.package));
            put("filename", json!(f.filename));
            put("abs_path", json!(f.abs_path));
            put("lineno", json!(f.lineno));
            put("colno", json!(f.colno));
            put("instruction_addr", json!(f.instruction_addr));
            put("in_app", json!(f.in_app));
            Value::Object(frame)
        })
        .collect();
    json!({"frames": frames})
}

/// The crashed thread's symbolicated frames as a Sentry stacktrace.
pub(crate) fn crashed_thread_frames(stacks: &Symbolicated) -> Option<Value> {
    let thread = stacks.threads.get(stacks.crashing_thread?)?;
    Some(stacktrace(thread, stacks))
}

fn stacktrace(thread: &symbolicate::Thread, stacks: &Symbolicated) -> Value {
    let frames: Vec<Value> = thread.frames.iter().rev().map(|f| native_frame(f, stacks)).collect();
    // The symbolicator already made caller addresses point into the call.
    json!({"frames": frames, "instruction_addr_adjustment": "none"})
}

fn native_frame(frame: &symbolicate::Frame, stacks: &Symbolicated) -> Value {
    let module = frame.module_base.and_then(|base| stacks.modules.iter().find(|m| m.base == base));
    let mut out = Map::new();
    out.insert("instruction_addr".into(), json!(report::hex(frame.instruction)));
    if let Some(base) = frame.module_base {
        out.insert("image_addr".into(), json!(report::hex(module.map_or(base, load_address))));
    }
    if let Some(addr) = frame.function_address {
        out.insert("symbol_addr".into(), json!(report::hex(addr)));
    }
    if let Some(function) = &frame.function {
        out.insert("function".into(), json!(function));
    }
    if let Some(file) = &frame.file {
        let name = Path::new(file).file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
        out.insert("filename".into(), json!(name));
        out.insert("abs_path".into(), json!(file));
    }
    if let Some(line) = frame.line {
        out.insert("lineno".into(), json!(line));
    }
    if let Some(module) = module {
        out.insert("package".into(), json!(module.code_file));
        out.insert("in_app".into(), json!(is_in_app(&module.code_file)));
    }
    out.insert("trust".into(), json!(frame.trust));
    Value::Object(out)
}

/// Frames of the program itself, not of the system's libraries, are the
/// application's: Sentry groups issues by them.
pub(crate) fn is_in_app(code_file: &str) -> bool {
    const SYSTEM: [&str; 6] = ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/", "linux-vdso"];
    !SYSTEM.iter().any(|prefix| code_file.starts_with(prefix) || code_file.contains("linux-vdso"))
}

pub(crate) fn threads(stacks: &Symbolicated) -> Vec<Value> {
    stacks
        .threads
        .iter()
        .enumerate()
        .map(|(i, thread)| {
            let crashed = stacks.crashing_thread == Some(i);
            let mut value = json!({"id": thread.tid, "crashed": crashed, "current": crashed});
            if let Some(name) = &thread.name {
                value["name"] = json!(name);
            }
            if !thread.frames.is_empty() {
                value["stacktrace"] = stacktrace(thread, stacks);
            }
            value
        })
        .collect()
}

/// Where the module's first segment is loaded: what Sentry subtracts from
/// an address to look it up in the debug file. The dump's record may start
/// at a later mapping (a large executable whose read-only first segment was
/// mapped apart, like node's).
fn load_address(module: &symbolicate::Module) -> u64 {
    module.image_base.filter(|b| *b <= module.base).unwrap_or(module.base)
}

/// One image per loaded file: the dump's records of a file mapped in
/// pieces are joined into one range from its load address, so that no two
/// images overlap.
pub(crate) fn images(stacks: &Symbolicated) -> Vec<Value> {
    let mut images: Vec<(u64, u64, &symbolicate::Module)> = Vec::new();
    for m in &stacks.modules {
        let (start, end) = (load_address(m), m.base.saturating_add(m.size));
        match images.iter_mut().find(|(s, _, first)| *s == start && first.code_file == m.code_file) {
            Some((_, image_end, _)) => *image_end = (*image_end).max(end),
            None => images.push((start, end, m)),
        }
    }
    images
        .into_iter()
        .map(|(start, end, m)| {
            let mut image = json!({
                "type": "elf",
                "code_file": m.code_file,
                "image_addr": report::hex(start),
                "image_size": end - start,
            });
            if let Some(code_id) = &m.code_id {
                image["code_id"] = json!(code_id.to_ascii_lowercase());
            }
            if let Some(debug_id) = m.debug_id.as_deref().and_then(sentry_debug_id) {
                image["debug_id"] = json!(debug_id);
            }
            image
        })
        .collect()
}

/// Sentry's form of a Breakpad debug id: `ABCDEF…0` (32 hex digits of the
/// build-id read as a GUID, then the age) → `abcdef01-…` (age appended when
/// non-zero). Both are derived from the build-id the same way.
pub fn sentry_debug_id(breakpad: &str) -> Option<String> {
    if breakpad.len() < 32 || !breakpad.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = breakpad[..32].to_ascii_lowercase();
    let mut id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    let age = &breakpad[32..];
    if !age.is_empty() && u32::from_str_radix(age, 16).is_ok_and(|a| a != 0) {
        id.push('-');
        id.push_str(&age.to_ascii_lowercase());
    }
    Some(id)
}

fn contexts(report: &CrashReport, stacks: Option<&Symbolicated>) -> Value {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname.as_ref().map(|u| f(u).to_string_lossy().into_owned())
    };
    let arch = stacks.map(|s| s.cpu.clone()).or_else(|| field(|u| u.machine()));
    let mut crashwatch = json!({
        "report_id": report.id,
        "kind": report.kind.name(),
        "pid": report.program.pid,
        // Text, lossy where the path is not UTF-8 (Sentry takes strings).
        "executable": report.program.exe.to_string_lossy(),
        "status": report.status.to_string(),
        "exit_code": report.exit_code,
    });
    if let Some(ran) = report.duration() {
        crashwatch["ran_seconds"] = json!(ran.as_seconds_f64());
    }
    if let Some(crash) = &report.crash {
        if let Some(ms) = crash.dumped.capture_ms {
            crashwatch["capture_ms"] = json!(ms);
        }
        crashwatch["threads"] = json!(crash.dumped.threads);
        if let Some(e) = &crash.dumped.minidump_error {
            crashwatch["minidump_error"] = json!(e);
        }
        if let Some(e) = &crash.dumped.stacks_error {
            crashwatch["stacks_error"] = json!(e);
        }
    }
    if let Some(diagnosis) = stacks.and_then(|s| s.diagnosis.as_ref()) {
        crashwatch["diagnosis"] = json!(diagnosis);
    }
    if let Some(memory) = &report.memory {
        crashwatch["memory"] = memory_context(memory);
    }
    if let Some(oom) = &report.oom {
        crashwatch["oom"] = json!(oom);
    }
    if !report.oom_victims.is_empty() {
        crashwatch["oom_victims"] = json!(report.oom_victims);
    }
    if !report.notes.is_empty() {
        crashwatch["notes"] = json!(report.notes);
    }
    if let Some(snapshot) = &report.snapshot {
        let mut value = json!({
            "crossed_at": snapshot.crossed_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "taken_at": snapshot.taken_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "usage": snapshot.usage,
            "limit": snapshot.limit,
            "percent": (snapshot.percent() * 10.0).round() / 10.0,
            "threshold_percent": snapshot.threshold_percent,
            "noticed_by": snapshot.noticed_by,
            "seconds_before_end": (report.ended_at - snapshot.taken_at).as_seconds_f64(),
            "threads": snapshot.dumped.threads,
            "capture_ms": snapshot.dumped.capture_ms,
        });
        if let Some(e) = &snapshot.dumped.minidump_error {
            value["minidump_error"] = json!(e);
        }
        if let Some(e) = &snapshot.dumped.stacks_error {
            value["stacks_error"] = json!(e);
        }
        crashwatch["snapshot"] = value;
    }
    let mut contexts = json!({
        "os": {"type": "os", "name": "Linux", "kernel_version": field(|u| u.release())},
        "device": {"type": "device", "arch": arch},
        "crashwatch": crashwatch,
    });
    if let Some(panic) = &report.panic {
        contexts["runtime"] = json!({"type": "runtime", "name": format!("{:?}", panic.runtime)});
    }
    contexts
}

fn tags(report: &CrashReport) -> Value {
    let mut tags = json!({
        "exit_status": report.exit_code.to_string(),
        "pid": report.program.pid.to_string(),
        "kind": report.kind.name(),
        "program": report.program_name(),
    });
    if let ChildStatus::Signaled { signal, .. } = report.status {
        tags["signal"] = json!(signals::name(signal));
    }
    if let Some(id) = &report.hang_event {
        tags["hang.event_id"] = json!(id);
    }
    tags
}

fn breadcrumbs(report: &CrashReport) -> Vec<Value> {
    let skip = report.log_tail.len().saturating_sub(BREADCRUMBS);
    report.log_tail[skip..]
        .iter()
        .map(|line| {
            json!({
                "timestamp": line.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "type": "default",
                "category": line.stream.name(),
                "level": if line.stream == Stream::Stderr { "warning" } else { "info" },
                "message": line.text,
            })
        })
        .collect()
}

/// The log tail as a text attachment: `TIME stream| line`.
fn log_text(report: &CrashReport) -> String {
    let mut out = String::new();
    for line in &report.log_tail {
        let at = line.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        out.push_str(&format!("{at} {}| {}", line.stream.name(), line.text));
        if line.omitted > 0 {
            out.push_str(&format!(" […{} bytes not kept]", line.omitted));
        }
        out.push('\n');
    }
    out
}

/// The exception value of an OOM kill: how much the child had when the
/// kernel killed it, against which limit.
fn oom_value(memory: Option<&Memory>) -> String {
    let mut value = "killed by the kernel's OOM killer".to_string();
    let Some(memory) = memory else { return value };
    if let Some(peak) = memory.peak_rss {
        value.push_str(&format!(" at a peak RSS of {}", report::human_bytes(peak)));
    }
    if let Some(limit) = memory.cgroup.as_ref().and_then(|cg| cg.limit) {
        value.push_str(&format!(" (memory limit {})", report::human_bytes(limit)));
    }
    value
}

/// The child's memory as numbers (bytes) a Sentry search can use.
fn memory_context(memory: &Memory) -> Value {
    let mut context = json!({});
    if let Some(peak) = memory.peak_rss {
        context["peak_rss_bytes"] = json!(peak);
    }
    if let Some(rss) = memory.samples.iter().rev().find_map(|s| s.rss) {
        context["last_rss_bytes"] = json!(rss);
    }
    if let Some(cg) = &memory.cgroup {
        context["cgroup"] = json!(cg.path);
        if let Some(limit) = cg.limit {
            context["cgroup_limit_bytes"] = json!(limit);
        }
        if let Some(peak) = cg.peak.filter(|_| cg.limit.is_some()) {
            context["cgroup_peak_bytes"] = json!(peak);
        }
    }
    context
}

#[cfg(test)]
mod tests;
