//! Finishing what a crashwatch that was killed left in the spool: every
//! entry point (`run`, `send`, `list`, `show`, `doctor`) does this first, so
//! that a crash whose dump was written is reported whatever happened to its
//! crashwatch afterwards (see `crate::spool` for the states).
//!
//! 1. Scratch directories whose owner is gone: each complete dump is taken
//!    into the report of its id (derived from its name, as its owner did),
//!    with a record made from the dump itself when the owner had made none;
//!    the copies of deleted binaries go with it; anything else is removed.
//! 2. Reports whose lock is free and that are unfinished, or finished but not
//!    queued, are finished ([`filing::finish`]); a directory with no record
//!    (its filer was killed right after making it) is removed.
//!
//! Everything is done under the report's lock, so two crashwatches on one
//! spool never finish one report twice; a report locked by a live
//! crashwatch is left to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use time::OffsetDateTime;

use crate::commands::delivery::Delivery;
use crate::commands::filing::{self, Filer};
use crate::errors::Chain;
use crate::process::{ChildStatus, signals};
use crate::report::{self, Crash, CrashReport, Dumped, Ending, FileRef, Preserved};
use crate::sentry::deliver::Mode;
use crate::spool::{Abandoned, DELIVER, Held, Missing, Spool, SpoolError, State, Store, scratch_id};

/// What was found, or done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Scratch directories of crashwatches that are gone.
    pub abandoned: usize,
    /// Dumps found in them (taken in, when recovering).
    pub dumps: usize,
    /// Reports left unfinished.
    pub unfinished: usize,
    /// Finished reports not yet queued for Sentry.
    pub to_queue: usize,
    /// Reports being filed by a crashwatch that is running.
    pub busy: usize,
    /// Reports finished (recovering).
    pub finished: usize,
    /// Reports queued (recovering).
    pub queued: usize,
}

impl Recovered {
    /// Whether a crashwatch that was killed left a crash unreported (an
    /// empty scratch directory is no news: it is just removed).
    pub fn left_over(&self) -> bool {
        self.dumps + self.unfinished + self.to_queue > 0
    }
}

/// Recovers on a thread of its own (`crashwatch run`: beside the child),
/// then sends what is waiting.
pub fn in_background(filer: Arc<Filer>) -> Option<JoinHandle<()>> {
    filer.spool()?;
    let thread = std::thread::Builder::new().name("recover".into()).spawn(move || {
        if let Some(spool) = filer.spool() {
            let by = format!("`crashwatch run` (pid {})", std::process::id());
            match recover(spool, Some(filer.delivery()), &by) {
                Ok(done) => log(&done),
                Err(e) => tracing::warn!("failed to look for reports left unfinished: {}", Chain(&e)),
            }
        }
        filer.delivery().flush_in_background(Mode::Now);
    });
    thread.inspect_err(|e| tracing::warn!("failed to start the recovery of unfinished reports: {e}")).ok()
}

/// Says what a recovery did, when it did anything.
pub fn log(done: &Recovered) {
    if done.finished + done.dumps + done.queued > 0 {
        tracing::warn!(
            "finished {} report(s) and queued {} that a crashwatch which was killed had left ({} dump(s) taken in)",
            done.finished,
            done.queued,
            done.dumps
        );
    }
}

/// What is left over in `spool`, without changing anything.
pub fn survey(spool: &Spool) -> Result<Recovered, SpoolError> {
    let mut found = Recovered::default();
    let Some(dir) = spool.dir() else { return Ok(found) };
    for abandoned in Abandoned::find(dir)? {
        found.abandoned += 1;
        found.dumps += abandoned.files()?.iter().filter(|f| dump_name(f).is_some()).count();
    }
    let Some(store) = spool.store()? else { return Ok(found) };
    for id in store.ids()? {
        let looked = store.state(&id).and_then(|state| Ok((state, store.hold(&id, Missing::Absent)?.is_some())));
        match looked {
            Ok((State::Unfinished | State::Committing | State::ToQueue, false)) => found.busy += 1,
            Ok((State::Unfinished | State::Committing, true)) => found.unfinished += 1,
            Ok((State::ToQueue, true)) => found.to_queue += 1,
            Ok(_) => {}
            Err(e) => tracing::warn!("{}", Chain(&e)),
        }
    }
    Ok(found)
}

/// Finishes what is left over in `spool` (see the module docs), queueing
/// with `delivery` when given; `by` names who does it, for the reports'
/// notes.
pub fn recover(spool: &Spool, delivery: Option<&Delivery>, by: &str) -> Result<Recovered, SpoolError> {
    let mut done = Recovered::default();
    let Some(dir) = spool.dir() else { return Ok(done) };
    let abandoned = Abandoned::find(dir)?;
    let store = match (spool.store()?, abandoned.is_empty()) {
        (Some(store), _) => store,
        (None, true) => return Ok(done),
        (None, false) => spool.create_store()?,
    };
    for scratch in abandoned {
        done.abandoned += 1;
        take_in(&store, scratch, delivery, by, &mut done)?;
    }
    store.sweep_deleted()?;
    for id in store.ids()? {
        // One report that cannot be read (a link planted in the store) must
        // not keep the others from being finished.
        if let Err(e) = recover_one(&store, &id, delivery, by, &mut done) {
            tracing::warn!("{}", Chain(&e));
        }
    }
    Ok(done)
}

fn recover_one(
    store: &Store,
    id: &str,
    delivery: Option<&Delivery>,
    by: &str,
    done: &mut Recovered,
) -> Result<(), SpoolError> {
    if !matches!(store.state(id)?, State::Unfinished | State::Committing | State::ToQueue | State::Empty) {
        return Ok(());
    }
    let Some(held) = store.hold(id, Missing::Absent)? else {
        done.busy += 1;
        return Ok(());
    };
    match held.state()? {
        State::Empty => store.delete(held)?,
        State::Unfinished | State::Committing | State::ToQueue => finish(held, delivery, by, done),
        State::Done | State::Gone => {}
    }
    Ok(())
}

fn finish(held: Held, delivery: Option<&Delivery>, by: &str, done: &mut Recovered) {
    let id = held.id().to_owned();
    let unfinished = held.state().is_ok_and(|s| matches!(s, State::Unfinished | State::Committing));
    let Some(finished) = filing::finish(held, delivery, Some(by), None, crate::config::HelperLimits::default()) else {
        return;
    };
    if unfinished {
        done.unfinished += 1;
        done.finished += usize::from(finished.saved.is_ok());
    } else {
        done.to_queue += 1;
    }
    if let Err(e) = &finished.saved {
        tracing::warn!(report = report::short_id(&id), "{}", Chain(e));
    }
    if matches!(finished.queued, Some(crate::commands::delivery::Queued::Yes)) {
        done.queued += 1;
    }
    tracing::info!(
        report = report::short_id(&id),
        "report {} of {} (pid {}), left by a crashwatch that stopped, is finished{}",
        report::short_id(&id),
        finished.report.program_name(),
        finished.report.program.pid,
        match &finished.queued {
            Some(queued) => queued.why_not().map(|why| format!("; {why}")).unwrap_or_else(|| "; queued".into()),
            None => String::new(),
        }
    );
}

/// `crash-TGID-TID-NANOS.dmp`: the pid it names.
fn dump_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("crash-")?.strip_suffix(".dmp")?;
    rest.split('-').next()?.parse().ok()
}

/// `TGID-INODE-NAME`, a copy of a deleted binary: its pid, inode and name
/// (not a `.partial` one, cut short).
fn preserved_name(name: &str) -> Option<(i32, u64, &str)> {
    if name.ends_with(".partial") {
        return None;
    }
    let mut parts = name.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let inode = parts.next()?.parse().ok()?;
    Some((pid, inode, parts.next()?))
}

/// Step 1 of the module docs for one scratch directory.
fn take_in(
    store: &Store,
    scratch: Abandoned,
    delivery: Option<&Delivery>,
    by: &str,
    done: &mut Recovered,
) -> Result<(), SpoolError> {
    let files = scratch.files()?;
    let mut complete = true;
    for name in &files {
        let Some(pid) = dump_name(name) else { continue };
        done.dumps += 1;
        let id = scratch_id(scratch.name(), name);
        let Some(held) = store.hold(&id, Missing::Create)? else {
            // Someone else is on it: this directory is left for later.
            complete = false;
            continue;
        };
        let preserved: BTreeMap<String, (u64, String)> = files
            .iter()
            .filter_map(|f| preserved_name(f).filter(|(p, _, _)| *p == pid).map(|(_, i, n)| (f.clone(), (i, n.into()))))
            .collect();
        if let Err(e) = adopt_dump(&held, &scratch, name, pid, &preserved) {
            tracing::warn!("failed to take in {}: {}", scratch.dir().join(name).display(), Chain(&e));
            complete = false;
            continue;
        }
        finish(held, delivery, by, done);
    }
    if complete {
        scratch.remove()?;
    }
    Ok(())
}

/// Moves dump `name` (of process `pid`) and its copies of deleted binaries
/// into the held report, giving it a record made from the dump if it has
/// none.
fn adopt_dump(
    held: &Held,
    scratch: &Abandoned,
    name: &str,
    pid: i32,
    preserved: &BTreeMap<String, (u64, String)>,
) -> Result<(), SpoolError> {
    let (mut record, modules, made) = match held.record()? {
        Some(record) => (record, Vec::new(), false),
        None => {
            let (record, modules) = from_dump(held.id(), scratch, name, pid)?;
            (record, modules, true)
        }
    };
    for (file, (inode, base)) in preserved {
        let rel = format!("preserved/{base}.{inode}");
        let Some(crash) = record.crash.as_mut() else { break };
        if held.has(&rel) {
            continue;
        }
        if !made {
            // Its crashwatch recorded which copies belong to the report.
            if crash.preserved.iter().any(|p| p.file == rel) {
                held.adopt(scratch.dir(), file, &rel)?;
            }
            continue;
        }
        // The module of that name in the dump says where it was mapped; a
        // copy of no module in it is of no use to the report.
        let deleted = |path: &std::path::Path| path.to_string_lossy().trim_end_matches(" (deleted)").to_owned();
        let module = modules.iter().find(|(path, _)| {
            std::path::Path::new(&deleted(path)).file_name().is_some_and(|n| n.to_string_lossy() == base.as_str())
        });
        let Some((path, address)) = module else { continue };
        let size = held.adopt(scratch.dir(), file, &rel)?;
        let original = std::path::PathBuf::from(deleted(path));
        crash.preserved.push(Preserved { original, file: rel, size, base_address: report::hex(*address) });
    }
    if made {
        // Sent as its crashwatch would have sent it, if it had a DSN.
        let intent = scratch.dir().read(DELIVER).map_err(SpoolError::io("read", scratch.dir().join(DELIVER)))?;
        if let Some(intent) = intent.filter(|_| !held.has(DELIVER)) {
            held.set_delivery(&intent)?;
        }
        held.save_unfinished(&record)?;
    }
    if !held.has("minidump.dmp") {
        held.adopt(scratch.dir(), name, "minidump.dmp")?;
    }
    Ok(())
}

/// The modules of a dump: the file each was mapped from, and where.
type Modules = Vec<(std::path::PathBuf, u64)>;

/// A report made from a dump alone: what the minidump says of the crash
/// (signal, thread, command line, time); the exit status is the signal's,
/// and the log tail is not known. With the dump's modules.
fn from_dump(id: &str, scratch: &Abandoned, name: &str, pid: i32) -> Result<(CrashReport, Modules), SpoolError> {
    use minidump::{Minidump, MinidumpException, MinidumpModuleList, MinidumpThreadList, MinidumpThreadNames, Module};
    let path = scratch.dir().join(name);
    let bytes = scratch.dir().read(name).map_err(SpoolError::io("read", path.clone()))?.unwrap_or_default();
    let size = bytes.len() as u64;
    let unreadable = |e: minidump::Error| SpoolError::Io {
        action: "read the minidump",
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    let dump = Minidump::read(bytes).map_err(unreadable)?;
    let exception: MinidumpException<'_> = dump.get_stream().map_err(unreadable)?;
    let record = &exception.raw.exception_record;
    let (signal, code) = (record.exception_code as i32, record.exception_flags as i32);
    let tid = exception.get_crashing_thread_id();
    let threads = dump.get_stream::<MinidumpThreadList<'_>>().map(|t| t.threads.len()).unwrap_or(0);
    let thread_name =
        dump.get_stream::<MinidumpThreadNames>().ok().and_then(|n| n.get_name(tid).map(|s| s.into_owned()));
    let module_list = dump.get_stream::<MinidumpModuleList>().ok();
    let exe = module_list
        .as_ref()
        .and_then(|m| m.main_module().map(|m| std::path::PathBuf::from(m.code_file().into_owned())))
        .unwrap_or_default();
    let modules: Modules = module_list
        .iter()
        .flat_map(|list| list.iter())
        .map(|m| (std::path::PathBuf::from(m.code_file().into_owned()), m.base_address()))
        .collect();
    let argv: Vec<String> = dump
        .get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxCmdLine as u32)
        .map(|raw| {
            raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default();
    let ended_at = OffsetDateTime::from_unix_timestamp(i64::from(dump.header.time_date_stamp))
        .map_or_else(|_| std::time::SystemTime::now(), Into::into);
    let mut report = CrashReport::new(Ending {
        argv: &argv,
        exe: exe.clone(),
        pid,
        status: ChildStatus::Signaled { signal, core_dumped: None },
        started_at: None,
        ended_at,
        stop_requested: None,
        log_tail: &[],
        log_tail_complete: false,
        release: None,
        environment: None,
    });
    report.id = id.to_owned();
    let fault = matches!(signal, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE);
    report.crash = Some(Crash {
        signal,
        signal_name: signals::name(signal),
        code,
        code_name: signals::code_name(signal, code).map(str::to_owned),
        fault_address: (fault && code > 0).then(|| report::hex(record.exception_address)),
        sender: None,
        exe,
        diagnosis: None,
        preserved: Vec::new(),
        dumped: Dumped {
            pid,
            tid: tid as i32,
            thread_name: thread_name.unwrap_or_default(),
            threads,
            minidump: Some(FileRef { file: "minidump.dmp".into(), size }),
            minidump_error: None,
            stacks: None,
            stacks_error: None,
            capture_ms: None,
            notes: Vec::new(),
        },
    });
    report.notes.push(
        "made from the minidump alone: the crashwatch that wrote it stopped before it recorded the crash, so the \
         log tail, the release and the exit status are not known"
            .into(),
    );
    Ok((report, modules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_read_as_the_tracer_writes_them() {
        assert_eq!(dump_name("crash-41-42-1700000000000000000.dmp"), Some(41));
        assert_eq!(dump_name("crash-41-42-17.dmp.partial"), None);
        assert_eq!(dump_name("snapshot-41-42-17.dmp"), None);
        assert_eq!(preserved_name("41-9876-libfoo.so.1"), Some((41, 9876, "libfoo.so.1")));
        assert_eq!(preserved_name("crash-41-42-17.dmp"), None);
    }
}
