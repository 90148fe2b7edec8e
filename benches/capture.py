#!/usr/bin/env python3
"""Crash capture time and tracing overhead of `crashwatch run`.

    python3 benches/capture.py [--runs-capture 7] [--runs-overhead 7]
                               [--runs-http 5] [--wrk-duration 5]
                               [--http-threads 1] [--wait-quiet 600]
                               [--no-build | --exe PATH] [--skip-http]
                               [--no-pinned] [--capture-only]

Builds crashwatch (`cargo build --release`) and compiles the C fixtures
from testdata/ with `gcc -O2 -pthread` into a temporary directory; as root,
installs `wrk` (and gcc) with apt-get when missing. Then measures,
alternating the runs with and without crashwatch so both see the same
machine state:

1. Crash capture: `many_threads N 0` for 1, 6, 50, 500 and 1000 threads and
   `many_threads 49 200` (50 threads, 200 MB of touched heap). From each
   report: `crash.capture_ms` (fatal stop -> minidump written),
   `crash.minidump.size`, `crash.threads`; the capture's phases from
   crashwatch's debug log (CRASHWATCH_LOG=debug for these runs); and the wall
   time of the whole crashing run, bare and under crashwatch.
2. Tracing overhead, bare / `crashwatch run --no-ptrace` / `crashwatch run`:
   (a) bench_threads: 10,000 threads created and joined one at a time;
   (b) bench_signals: 100,000 raise(SIGUSR1) with a handler;
   for (a) and (b) also pinned with taskset: all on CPU 0 (bare and
   traced), and crashwatch on CPU 0 with the program on CPU 1;
   (c) bench_http (one epoll worker by default, keep-alive, fixed 200)
       loaded with `wrk -t2 -c32 -d5s` on 127.0.0.1: requests/s.
   crashwatch's own CPU time is wait4()'s rusage of the crashwatch process
   (which includes its reaped child) minus the getrusage(RUSAGE_SELF) the
   child prints just before it exits.

Every run is checked (exit status, one report with a minidump and the
expected thread count, wrk without socket errors or non-2xx answers); a
failed check stops the script. Core dumps are disabled (RLIMIT_CORE 0) for
all runs, bare and supervised alike. Before each section and each round of
alternated runs the script waits for the machine to be idle (at most
--wait-quiet seconds in all); each section does one discarded warm-up run of
every variant first, and ends by saying how much CPU other processes used
meanwhile. Servers are killed at the end, whatever happens. Prints markdown
tables: medians with all runs; ratios are crashwatch / bare.
"""
import argparse
import atexit
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "testdata")
CRASHERS = [  # (extra threads, heap MB)
    (0, 0),
    (5, 0),
    (49, 0),
    (499, 0),
    (999, 0),
    (49, 200),
]
LIVE = []  # servers and supervisors still running: killed at exit


def descendants(pid):
    """Pids below pid (read from /proc/PID/task/*/children), deepest last."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def kill_live():
    """At exit: SIGKILL every server or supervisor still running, and what it
    started (a --no-ptrace child would outlive a killed crashwatch)."""
    for p in LIVE:
        if p.returncode is None:
            for pid in [p.pid, *descendants(p.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass


def apt_install(packages, updated=[False]):
    if os.geteuid() != 0:
        sys.exit(f"missing {' '.join(packages)}: install them (apt-get install -y {' '.join(packages)})")
    if not updated[0]:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        updated[0] = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", *packages], check=True, stdout=subprocess.DEVNULL, env=env)


def ensure_tools(need_wrk):
    missing = []
    if not shutil.which("gcc"):
        missing += ["gcc", "libc6-dev"]
    if need_wrk and not shutil.which("wrk"):
        missing.append("wrk")
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        apt_install(missing)


def build(args, tmp):
    if args.exe:
        exe = os.path.abspath(args.exe)
    else:
        exe = os.path.join(ROOT, "target", "release", "crashwatch")
        if not args.no_build:
            subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    if not os.access(exe, os.X_OK):
        sys.exit(f"no crashwatch binary at {exe}")
    bins = {}
    for name in ["many_threads", "bench_threads", "bench_signals", "bench_http"]:
        out = os.path.join(tmp, name)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", out, os.path.join(TESTDATA, name + ".c")], check=True)
        bins[name] = out
    return exe, bins


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    ncpu = len(os.sched_getaffinity(0))
    return {
        "nproc": ncpu,
        "model": model,
        "short": f"{ncpu}× {model}",
        "long": f"nproc {ncpu}, {model}, {mem_kib / (1 << 20):.1f} GiB, Linux {platform.release()}",
    }


def cpu_times():
    """(busy, steal) jiffies of all CPUs: busy = user+nice+system+irq+softirq
    (loopback networking runs in softirqs, which getrusage charges to the
    task); steal is time the hypervisor gave to other guests."""
    with open("/proc/stat") as f:
        f = [int(x) for x in f.readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6], f[7]


def busy_fraction(seconds):
    """Share of all CPUs busy over `seconds` while this script only sleeps."""
    b0, _ = cpu_times()
    time.sleep(seconds)
    b1, _ = cpu_times()
    return (b1 - b0) / (os.sysconf("SC_CLK_TCK") * seconds * NCPU)


NCPU = len(os.sched_getaffinity(0))


class OtherLoad:
    """CPU time used by processes other than this script and its children
    (busy time in /proc/stat minus our own rusage) over a section."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.b0, self.s0 = cpu_times()
        self.ours0 = self.ours()
        self.wall0 = time.monotonic()
        self.waited0, self.busy_waiting0 = quiet.waited, quiet.busy_waiting

    @staticmethod
    def ours():
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def report(self):
        b1, s1 = cpu_times()
        hz = os.sysconf("SC_CLK_TCK")
        # Time spent waiting for the machine to be idle is left out.
        busy = (b1 - self.b0) - (self.quiet.busy_waiting - self.busy_waiting0)
        others = max(busy / hz - (self.ours() - self.ours0), 0.0)
        steal = (s1 - self.s0) / hz
        wall = time.monotonic() - self.wall0 - (self.quiet.waited - self.waited0)
        if wall < 2:
            return "(Section too short to tell how busy other processes kept the machine.)\n"
        share = others / (wall * NCPU)
        text = (f"Other processes used {others:.1f} CPU-s while this section ran ({share * 100:.0f}% of the machine "
                f"over {wall:.0f} s, waits for idleness left out)")
        if steal > 0.01 * wall * NCPU:
            text += f"; the hypervisor stole {steal:.1f} CPU-s"
        if share >= 0.05:
            text += " — the machine was shared: treat these figures with care"
        return text + ".\n"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Quiet:
    """Waits for other load to stop, within a budget for the whole script:
    before each section, and before each round of alternated runs."""

    THRESHOLD = 0.10

    def __init__(self, budget_s):
        self.budget = budget_s
        self.waited = 0.0  # seconds
        self.busy_waiting = 0  # busy jiffies of all CPUs while waiting

    def wait(self, sample_s=0.3):
        start, b0 = time.monotonic(), cpu_times()[0]
        busy = busy_fraction(sample_s)
        while busy > self.THRESHOLD and self.waited + (time.monotonic() - start) < self.budget:
            busy = busy_fraction(1.0)
        waited = time.monotonic() - start
        self.waited += waited
        self.busy_waiting += cpu_times()[0] - b0
        return busy, waited

    def section(self):
        busy, waited = self.wait(1.0)
        note = f"other load just before: {busy * 100:.0f}% of all CPUs busy (1 s sample), loadavg {loadavg()}"
        if busy > self.THRESHOLD:
            note += " — NOT QUIET (waiting budget spent): results are noisy, rerun on an idle machine"
        elif waited > 2:
            note += f" (waited {waited:.0f} s for the machine to be idle)"
        return note + "\n"


def git_rev(exe):
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "?"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return f"{version} (tree {rev})"


DEBUG_ENV = dict(os.environ, CRASHWATCH_LOG="debug")  # crashwatch logs the capture's phases at debug


def run(cmd, timeout=300, env=None):
    """Runs cmd with stdout and stderr in files; returns (seconds, exit status
    as subprocess gives it, cpu seconds from wait4 (user+sys, including the
    process's reaped descendants), stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        LIVE.append(p)
        timer = threading.Timer(timeout, p.kill)  # a hung run fails instead of hanging the script
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        LIVE.remove(p)
        out.seek(0)
        err.seek(0)
        return elapsed, p.returncode, ru.ru_utime + ru.ru_stime, out.read().decode(errors="replace"), \
            err.read().decode(errors="replace")


def child_cpu(stdout):
    """CPU seconds the bench program reported for itself (RUSAGE_SELF)."""
    m = re.search(r"utime_us=(\d+) stime_us=(\d+)", stdout)
    if not m:
        raise RuntimeError(f"no rusage line in the program's output: {stdout!r}")
    return (int(m.group(1)) + int(m.group(2))) / 1e6


def fmt_runs(values, fmt):
    return " ".join(fmt.format(v) for v in values)


def size_str(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    return f"{n / 1024:.1f} KiB"


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print()


# ---------------------------------------------------------------- section 1

def capture_bench(exe, bins, runs, mach, tmp, quiet):
    print("## 1. Crash capture: fatal stop → minidump written\n")
    print(quiet.section())
    load = OtherLoad(quiet)
    print(f"machine: {mach['long']}; {runs} runs per crasher, alternating bare and crashwatch "
          "(after one discarded warm-up of each); a fresh spool per run.\n")
    results = []
    for extra, heap in CRASHERS:
        prog = [bins["many_threads"], str(extra), str(heap)]
        bare_t, cw_t, cap, size, threads, phases = [], [], [], [], set(), []
        for i in range(runs + 1):
            quiet.wait()
            t, rc, _, _, err = run(prog)
            if rc != -signal.SIGSEGV:
                raise RuntimeError(f"bare {prog} ended with {rc}, expected SIGSEGV: {err}")
            spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
            t2, rc2, _, _, err2 = run([exe, "--spool-dir", spool, "run", "--", *prog], env=DEBUG_ENV)
            if rc2 != 128 + signal.SIGSEGV:
                raise RuntimeError(f"crashwatch run {prog} exited {rc2}, expected 139: {err2}")
            listing = subprocess.run([exe, "--spool-dir", spool, "list", "--json"], capture_output=True, text=True,
                                     check=True).stdout
            reports = [json.loads(line) for line in listing.splitlines() if line.strip()]
            if len(reports) != 1 or not (reports[0].get("crash") or {}).get("minidump"):
                raise RuntimeError(f"expected one report with a minidump, got: {listing}\n{err2}")
            crash = reports[0]["crash"]
            if crash["threads"] != extra + 1:
                raise RuntimeError(f"report has {crash['threads']} threads, expected {extra + 1}")
            shutil.rmtree(spool)
            if i == 0:
                continue  # warm-up
            bare_t.append(t)
            cw_t.append(t2)
            cap.append(crash["capture_ms"])
            # Every `NAME_ms=X` of the line, whatever the phases are called
            # (they changed with issue 19: settle went, pin and resume came).
            m = re.search(r"capture phases((?: \w+_ms=[\d.]+)+)", err2)
            if m:
                phases.append(dict((k, float(v)) for k, v in re.findall(r"(\w+)_ms=([\d.]+)", m.group(1))))
            size.append(crash["minidump"]["size"])
            threads.add(crash["threads"])
        results.append(((extra, heap), bare_t, cw_t, cap, size, threads, phases))

    rows = []
    names = []
    for (extra, heap), _, _, cap, size, threads, phases in results:
        ph = "–"
        if phases and len(phases) == len(cap) and all(p.keys() == phases[0].keys() for p in phases):
            names = list(phases[0])
            ph = " / ".join(f"{statistics.median([p[k] for p in phases]):.2f}" for k in names)
        rows.append([
            f"`crashwatch run -- many_threads {extra} {heap}`",
            mach["short"],
            f"{extra + 1}" + (f", {heap} MB heap" if heap else ""),
            f"**{statistics.median(cap):.2f} ms**",
            fmt_runs(cap, "{:.2f}"),
            ph,
            size_str(statistics.median(size)),
            fmt_runs(size, "{}"),
        ])
    table(["command", "machine", "threads", "capture_ms median", "capture_ms runs",
           f"phases: {' / '.join(names) or '?'} (ms, medians)", "dump size median",
           "dump sizes (bytes)"], rows)

    print("Wall time of the whole crashing run (start → crashwatch exited), bare vs under crashwatch: "
          "includes crashwatch's start-up, thread creation under ptrace, the capture, and all it does after "
          "the capture before exiting (report, symbolication, spool writes):\n")
    rows = []
    for (extra, heap), bare_t, cw_t, *_ in results:
        b, c = statistics.median(bare_t), statistics.median(cw_t)
        rows.append([
            f"`many_threads {extra} {heap}`",
            mach["short"],
            f"{b * 1000:.1f} ms",
            fmt_runs([x * 1000 for x in bare_t], "{:.1f}"),
            f"{c * 1000:.1f} ms",
            fmt_runs([x * 1000 for x in cw_t], "{:.1f}"),
            f"**{c / b:.2f}×** (+{(c - b) * 1000:.1f} ms)",
        ])
    table(["command", "machine", "bare median", "bare runs (ms)", "crashwatch median", "crashwatch runs (ms)",
           "ratio crashwatch/bare"], rows)
    print(load.report())


# ---------------------------------------------------------------- section 2

def variants(exe, spool, pinned=False):
    """(key, command as shown, argv before the program, key of the bare run
    its ratio is against). `pinned` adds runs that place the tracer and the
    program on the same CPU or on two different ones (taskset, util-linux)."""
    cw = [exe, "--spool-dir", spool, "run"]
    vs = [
        ("bare", "", [], "bare"),
        ("no-ptrace", "crashwatch run --no-ptrace -- ", cw + ["--no-ptrace", "--"], "bare"),
        ("crashwatch", "crashwatch run -- ", cw + ["--"], "bare"),
    ]
    taskset = shutil.which("taskset")
    if pinned and NCPU >= 2 and taskset:
        vs += [
            ("bare@0", "taskset -c 0 ", [taskset, "-c", "0"], "bare@0"),
            ("crashwatch@0", "taskset -c 0 crashwatch run -- ", [taskset, "-c", "0", *cw, "--"], "bare@0"),
            ("crashwatch@0/1", "taskset -c 0 crashwatch run -- taskset -c 1 ",
             [taskset, "-c", "0", *cw, "--", taskset, "-c", "1"], "bare@0"),
        ]
    return vs


def program_bench(title, exe, prog, label, runs, mach, tmp, unit_count, unit_name, quiet, pinned):
    print(title + "\n")
    print(quiet.section())
    load = OtherLoad(quiet)
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    vs = variants(exe, spool, pinned)
    wall = {key: [] for key, *_ in vs}
    inner = {key: [] for key, *_ in vs}
    sup_cpu = {key: [] for key, *_ in vs}
    for i in range(runs + 1):
        quiet.wait()
        for key, _, prefix, _ in vs:
            t, rc, cpu, out, err = run(prefix + prog)
            if rc != 0:
                raise RuntimeError(f"{key} {prog} exited {rc}: {err}")
            if i == 0:
                continue
            wall[key].append(t)
            inner[key].append(int(re.search(r"elapsed_us=(\d+)", out).group(1)) / 1e6)
            sup_cpu[key].append(cpu - child_cpu(out))
    shutil.rmtree(spool)

    rows = []
    for key, shown, prefix, base in vs:
        m, loop = statistics.median(wall[key]), statistics.median(inner[key])
        supervised = "crashwatch" in shown
        rows.append([
            f"`{shown}{label}`",
            mach["short"],
            f"**{m:.3f} s**",
            fmt_runs(wall[key], "{:.3f}"),
            f"{loop:.3f} s",
            "1.00×" if key == base else f"**{m / statistics.median(wall[base]):.2f}×**",
            "–" if key == base else
            f"{(loop - statistics.median(inner[base])) / unit_count * 1e6:+.2f} µs",
            f"{statistics.median(sup_cpu[key]) * 1000:.0f} ms = "
            f"{statistics.median(sup_cpu[key]) / unit_count * 1e6:.2f} µs/{unit_name}" if supervised else "–",
        ])
    table(["command", "machine", "wall median", "wall runs (s)", "loop only (program's clock, median)",
           "ratio /bare", f"extra loop time per {unit_name}", "crashwatch's own CPU (median)"], rows)
    print(load.report())


def wait_line(p, prefix, timeout):
    """Reads p.stdout (a pipe) until a line starting with prefix arrives."""
    buf = b""
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while b"\n" not in buf or not any(l.startswith(prefix) for l in buf.split(b"\n")[:-1]):
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            raise RuntimeError(f"server did not print {prefix!r} (got {buf!r})")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"server closed stdout before {prefix!r} (got {buf!r})")
            buf += chunk
    for line in buf.split(b"\n"):
        if line.startswith(prefix):
            return line.decode()


def stop_server(p, timeout=10):
    """SIGTERM (crashwatch forwards it), wait, SIGKILL if needed; returns
    (cpu seconds from wait4 or None, rest of stdout)."""
    p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    cpu = None
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu = ru.ru_utime + ru.ru_stime
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            break
        time.sleep(0.005)
    rest = p.stdout.read().decode(errors="replace")
    p.stdout.close()
    LIVE.remove(p)
    return cpu, rest


def http_once(prefix, server, wrk_cmd, duration):
    p = subprocess.Popen(prefix + server, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    LIVE.append(p)
    try:
        port = int(wait_line(p, b"port=", 10).split("=")[1])
        res = subprocess.run(wrk_cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                             timeout=duration + 30)
    finally:
        cpu, rest = stop_server(p)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed: {res.stderr}")
    m = re.search(r"Requests/sec:\s*([\d.]+)", res.stdout)
    if not m:
        raise RuntimeError(f"no Requests/sec in wrk's output: {res.stdout}")
    bad = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", res.stdout)
    if bad:
        raise RuntimeError(f"wrk saw errors: {bad}")
    if p.returncode != 0:
        raise RuntimeError(f"server ended with {p.returncode}")
    sup = cpu - child_cpu(rest) if cpu is not None else None
    return float(m.group(1)), sup


def http_bench(exe, bins, runs, duration, threads, mach, tmp, quiet):
    wrk = shutil.which("wrk")
    print(f"### 2c. HTTP server under load: `wrk -t2 -c32 -d{duration}s http://127.0.0.1:PORT/` "
          f"(wrk {wrk_version(wrk)}) against `bench_http {threads}` ({threads} epoll worker(s), keep-alive, "
          f"fixed 200 of 2 bytes)\n")
    print(quiet.section())
    wrk_cmd = [wrk, "-t2", "-c32", f"-d{duration}s"]
    server = [bins["bench_http"], str(threads)]
    load = OtherLoad(quiet)
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    vs = variants(exe, spool)
    rps = {key: [] for key, *_ in vs}
    sup_cpu = {key: [] for key, *_ in vs}
    for i in range(runs + 1):
        quiet.wait()
        for key, _, prefix, _ in vs:
            r, sup = http_once(prefix, server, wrk_cmd, duration if i else 1)
            if i == 0:
                continue
            rps[key].append(r)
            sup_cpu[key].append(sup)
    shutil.rmtree(spool)

    base = statistics.median(rps["bare"])
    rows = []
    for key, shown, _, _ in vs:
        m = statistics.median(rps[key])
        cpus = [c for c in sup_cpu[key] if c is not None]
        rows.append([
            f"`{shown}bench_http {threads}`",
            mach["short"],
            f"**{m:,.0f} req/s**",
            fmt_runs(rps[key], "{:.0f}"),
            "1.00×" if key == "bare" else f"**{m / base:.3f}×**",
            "–" if key == "bare" or not cpus else f"{statistics.median(cpus) * 1000:.0f} ms",
        ])
    table(["command", "machine", "req/s median", "req/s runs", "ratio /bare (throughput)",
           f"crashwatch's own CPU per {duration} s run (median)"], rows)
    print(load.report())


def wrk_version(wrk):
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    m = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-capture", type=int, default=7)
    ap.add_argument("--runs-overhead", type=int, default=7)
    ap.add_argument("--runs-http", type=int, default=5)
    ap.add_argument("--threads", type=int, default=10_000)
    ap.add_argument("--signals", type=int, default=100_000)
    ap.add_argument("--wrk-duration", type=int, default=5)
    ap.add_argument("--http-threads", type=int, default=1, help="epoll workers of bench_http (default 1)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--no-pinned", action="store_true",
                    help="leave out the runs of 2a/2b pinned with taskset (tracer and program on one CPU or two)")
    ap.add_argument("--wait-quiet", type=float, default=600,
                    help="before each section and each round of runs, wait for other load to stop, "
                         "at most this many seconds in all (default 600; 0: never wait)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/crashwatch as it is")
    ap.add_argument("--exe", help="crashwatch binary to measure (implies --no-build)")
    ap.add_argument("--capture-only", action="store_true", help="run section 1 only (crash capture)")
    args = ap.parse_args()
    started = time.monotonic()
    atexit.register(kill_live)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    ensure_tools(need_wrk=not (args.skip_http or args.capture_only))
    tmp = tempfile.mkdtemp(prefix="crashwatch-bench-capture-")
    atexit.register(shutil.rmtree, tmp, True)
    exe, bins = build(args, tmp)
    mach = machine()
    quiet = Quiet(args.wait_quiet)
    print("# crashwatch capture and tracing benchmark\n")
    print(f"- machine: {mach['long']}")
    print(f"- crashwatch: {git_rev(exe)}, {exe}")
    print("- C fixtures: gcc -O2 -pthread; RLIMIT_CORE 0 for every run")
    print()

    capture_bench(exe, bins, args.runs_capture, mach, tmp, quiet)
    if args.capture_only:
        return

    print("## 2. Tracing overhead\n")
    print(f"machine: {mach['long']}; {args.runs_overhead} runs (HTTP: {args.runs_http}) of each, "
          "alternating bare / crashwatch --no-ptrace / crashwatch (after one discarded warm-up of each). "
          "`--no-ptrace` is the supervisor without tracing (pipes, signals): the difference to it is ptrace's cost. "
          "crashwatch's own CPU = wait4 rusage of crashwatch − the program's own getrusage(RUSAGE_SELF). "
          "In 2a and 2b the `taskset` rows pin everything to CPU 0 (tracer and program share a CPU) or crashwatch "
          "to CPU 0 and the program to CPU 1 (every ptrace stop is a wake-up across CPUs); their ratios are against "
          "the bare run pinned to CPU 0.\n")
    program_bench(f"### 2a. {args.threads:,} threads created and joined one at a time (`bench_threads {args.threads}`)",
                  exe, [bins["bench_threads"], str(args.threads)], f"bench_threads {args.threads}",
                  args.runs_overhead, mach, tmp, args.threads, "thread", quiet, not args.no_pinned)
    program_bench(f"### 2b. {args.signals:,} handled signals (`bench_signals {args.signals}`: raise(SIGUSR1) in a loop)",
                  exe, [bins["bench_signals"], str(args.signals)], f"bench_signals {args.signals}",
                  args.runs_overhead, mach, tmp, args.signals, "signal", quiet, not args.no_pinned)
    if not args.skip_http:
        http_bench(exe, bins, args.runs_http, args.wrk_duration, args.http_threads, mach, tmp, quiet)

    print(f"loadavg at the end: {loadavg()} (this script keeps about one CPU busy itself)")
    total = time.monotonic() - started
    print(f"Total time of this script: {total:.0f} s, of which {quiet.waited:.0f} s waiting for the machine to be idle.")


if __name__ == "__main__":
    sys.exit(main())
