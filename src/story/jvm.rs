//! The JVM's fatal error header: HotSpot caught a signal in native or VM
//! code (or failed an internal check), wrote `hs_err_pid*.log` and aborts.
//! The process then dies of SIGABRT; the header says what really happened.
//!
//! Shape (HotSpot 8–21, on stdout unless `-XX:+DisplayVMOutputToStderr`):
//!
//! ```text
//! #
//! # A fatal error has been detected by the Java Runtime Environment:
//! #
//! #  SIGSEGV (0xb) at pc=0x00007f2e2e6d2f94, pid=30125, tid=30126
//! #                                          <- or `#  Internal Error (file:line), pid=…`
//! # JRE version: OpenJDK Runtime Environment (17.0.15+6) (build …)
//! # Java VM: OpenJDK 64-Bit Server VM (…)
//! # Problematic frame:
//! # V  [libjvm.so+0xed2f94]  Unsafe_PutLong+0x124
//! #                                          <- or `# j  Foo.bar()V+3`, `# C  [libc.so.6+0x…]  memcpy+0x…`
//! # An error report file with more information is saved as:
//! # /srv/app/hs_err_pid30125.log
//! #
//! ```

use std::sync::LazyLock;

use regex::Regex;

use super::{Crash, Ctx, Frame, Runtime, Story, re};

pub(super) const HEADER: &str = r"^# A fatal error has been detected by the Java Runtime Environment:$";

struct Patterns {
    signal: Regex,
    internal: Regex,
    native_frame: Regex,
    java_frame: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    signal: re(
        r"^#\s+(?P<sig>SIG[A-Z0-9]+) \((?P<num>0x[0-9a-fA-F]+)\) at pc=(?P<pc>0x[0-9a-fA-F]+), pid=\d+, tid=(?P<tid>\d+)$",
    ),
    internal: re(r"^#\s+(?P<what>Internal Error|Out of Memory Error|Error: .*?) \((?P<where>[^)]*)\)"),
    // `V  [libjvm.so+0xed2f94]  Unsafe_PutLong+0x124`, `C  [libc.so.6+0x1a2b3]`
    native_frame: re(
        r"^# [VCv]\s+\[(?P<lib>[^+\]]+)\+(?P<off>0x[0-9a-fA-F]+)\](?:\s+(?P<func>[^+\s]+)(?:\+0x[0-9a-fA-F]+)?)?",
    ),
    // `j  HardCrash.writeThroughNull(Lsun/misc/Unsafe;)V+3`, `J 42 c1 Foo.bar()V (5 bytes) @ …`
    java_frame: re(r"^# [jJ]\s+(?:\d+\s+(?:c1|c2|jvmci)?\s*)?(?P<class>[\w$.]+)\.(?P<method>[\w$<>]+)\("),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

/// Lines the header may take (it is short; this bounds a damaged one).
const CAP: usize = 60;

pub(super) fn parse(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let mut crash = Crash::new(Runtime::Java, "", "");
    let mut pc = None;
    let mut problematic = None;
    let mut i = at + 1;
    while let Some(t) = cx.text(i).filter(|t| t.starts_with('#')) {
        if i - at > CAP {
            break;
        }
        if let Some(c) = RE.signal.captures(t) {
            crash.kind = c["sig"].to_owned();
            crash.thread = Some(format!("tid {}", &c["tid"]));
            pc = Some(c["pc"].to_owned());
        } else if let Some(c) = RE.internal.captures(t).filter(|_| crash.kind.is_empty()) {
            crash.kind = c["what"].to_owned();
            crash.value = c["where"].to_owned();
        } else if t == "# Problematic frame:" {
            problematic = cx.text(i + 1).map(|f| f.trim_start_matches('#').trim().to_owned());
            crash.frames.extend(cx.text(i + 1).and_then(|f| frame(f, pc.clone())));
        } else if t == "# An error report file with more information is saved as:" {
            crash.report_file = cx
                .text(i + 1)
                .and_then(|p| p.strip_prefix("# "))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned);
        }
        i += 1;
    }
    if crash.kind.is_empty() {
        return None;
    }
    let mut value = match &pc {
        Some(pc) => format!("{} at pc={pc}", crash.kind),
        None => std::mem::take(&mut crash.value),
    };
    if let Some(frame) = problematic {
        value.push_str(&format!(" in {frame}"));
    }
    crash.value = value;
    Some(Story { crash: crash.span(cx, at, i), next: i })
}

/// The problematic frame as a stack frame.
fn frame(text: &str, pc: Option<String>) -> Option<Frame> {
    if let Some(c) = RE.native_frame.captures(text) {
        return Some(Frame {
            function: c.name("func").map(|m| m.as_str().to_owned()),
            package: Some(c["lib"].to_owned()),
            instruction_addr: pc,
            in_app: false,
            ..Frame::default()
        });
    }
    let c = RE.java_frame.captures(text)?;
    Some(Frame {
        function: Some(c["method"].to_owned()),
        module: Some(c["class"].to_owned()),
        in_app: true,
        ..Frame::default()
    })
}
