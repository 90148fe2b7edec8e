#!/usr/bin/env python3
"""Cost of a ptrace stop: handled faults and signals, a JVM, a Go server.

    python3 benches/stops.py [--runs 7] [--runs-http 5] [--wrk-duration 5]
                             [--signals 100000] [--npe-calls 1000000]
                             [--baseline-exe PATH] [--no-build | --exe PATH]
                             [--skip-java] [--skip-go] [--wait-quiet 600]

Every handled signal a traced program takes is a signal-delivery-stop: the
program's thread stops, crashwatch's tracer thread wakes, decides, and
resumes it. This measures what that costs, alternating the runs bare /
`crashwatch run --no-ptrace` / `crashwatch run` (and, with --baseline-exe,
another crashwatch binary traced, so an old and a new tracer are compared in
the same invocation), after one discarded warm-up of each:

1. `bench_signals N segv`: N faults (a load from address 0) that the
   program's SIGSEGV handler recovers from, as the JVM and Go do;
   `bench_signals N usr1`: N raise(SIGUSR1) with a handler. Per variant:
   the loop's own time, stops per second and µs per stop (loop time / N),
   and the extra µs a stop costs over the bare run.
2. `java BenchNpe`: NullPointerExceptions thrown from JIT-compiled code
   (implicit null checks are SIGSEGVs the JVM handles); whole-run wall time.
   The number of SIGSEGVs is counted once, bare, with perf's
   signal:signal_deliver tracepoint.
3. `bench_go_http` (testdata/bench_go_http, net/http making garbage on every
   request, so the collector preempts goroutines with SIGURG) under
   `wrk -t2 -c32 -dDs` on loopback: requests/s, and the SIGURGs the server
   received per second (perf's signal:signal_generate on its pid).

Installs what it needs with apt-get when missing (gcc, wrk, golang-go,
default-jdk-headless, linux-perf). Waits for the machine to be idle before
each section and round (at most --wait-quiet seconds in all) and says how
much CPU other processes used. Prints markdown tables: medians, all runs,
ratios against the bare runs of the same invocation.
"""
import argparse
import atexit
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capture  # noqa: E402  (the helpers of the capture benchmark: runs, idleness, tables)
from capture import LIVE, OtherLoad, Quiet, fmt_runs, run, stop_server, table, wait_line  # noqa: E402

ROOT = capture.ROOT
TESTDATA = capture.TESTDATA


def ensure_tools(args):
    need = {"gcc": "gcc", "perf": "linux-perf"}
    if not args.skip_java:
        need.update({"java": "default-jdk-headless", "javac": "default-jdk-headless"})
    if not args.skip_go:
        need.update({"go": "golang-go", "wrk": "wrk"})
    missing = sorted({pkg for tool, pkg in need.items() if not shutil.which(tool)})
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        capture.apt_install(missing)


def build(args, tmp):
    exe = capture.build(argparse.Namespace(exe=args.exe, no_build=args.no_build), tmp)[0]
    bins = {}
    out = os.path.join(tmp, "bench_signals")
    subprocess.run(["gcc", "-O2", "-o", out, os.path.join(TESTDATA, "bench_signals.c")], check=True)
    bins["bench_signals"] = out
    if not args.skip_java:
        classes = os.path.join(tmp, "classes")
        subprocess.run(["javac", "-d", classes, os.path.join(TESTDATA, "BenchNpe.java")], check=True)
        bins["java"] = ["java", "-cp", classes, "BenchNpe"]
    if not args.skip_go:
        out = os.path.join(tmp, "bench_go_http")
        env = dict(os.environ, GOCACHE=os.path.join(tmp, "gocache"), GOPATH=os.path.join(tmp, "gopath"),
                   GOFLAGS="-mod=mod", GO111MODULE="on")
        subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(TESTDATA, "bench_go_http"), env=env,
                       check=True)
        bins["go"] = out
    return exe, bins


def variants(exe, baseline, spool):
    """(key, label prefix, argv prefix)."""
    cw = [exe, "--spool-dir", spool, "run"]
    vs = [
        ("bare", "", []),
        ("no-ptrace", "crashwatch run --no-ptrace -- ", cw + ["--no-ptrace", "--"]),
        ("crashwatch", "crashwatch run -- ", cw + ["--"]),
    ]
    if baseline:
        vs.append(("baseline", "baseline crashwatch run -- ", [baseline, "--spool-dir", spool, "run", "--"]))
    return vs


def alternate(vs, runs, quiet, once):
    """Runs once(key, prefix) for every variant, round after round (the
    first round is a warm-up); returns {key: [results]}."""
    results = {key: [] for key, *_ in vs}
    for i in range(runs + 1):
        quiet.wait()
        for key, _, prefix in vs:
            r = once(key, prefix)
            if i:
                results[key].append(r)
    return results


# ---------------------------------------------------------------- section 1

def per_stop(args, exe, bins, mach, tmp, quiet):
    print("## 1. Cost of one stop: handled SIGSEGV and SIGUSR1\n")
    print(quiet.section())
    load = OtherLoad(quiet)
    n = args.signals
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    vs = variants(exe, args.baseline_exe, spool)
    rows = []
    for kind in ["segv", "usr1"]:
        prog = [bins["bench_signals"], str(n), kind]

        def once(key, prefix):
            t, rc, _, out, err = run(prefix + prog)
            if rc != 0:
                raise RuntimeError(f"{key} {prog} exited {rc}: {err}")
            return int(re.search(r"elapsed_us=(\d+)", out).group(1)) / 1e6, t

        res = alternate(vs, args.runs, quiet, once)
        bare_loop = statistics.median(r[0] for r in res["bare"])
        for key, shown, _ in vs:
            loops = [r[0] for r in res[key]]
            loop = statistics.median(loops)
            rows.append([
                f"`{shown}bench_signals {n} {kind}`",
                f"**{loop:.3f} s**",
                fmt_runs(loops, "{:.3f}"),
                f"{n / loop:,.0f}",
                f"{loop / n * 1e6:.2f} µs",
                "–" if key == "bare" else f"{(loop - bare_loop) / n * 1e6:+.2f} µs",
                "1.00×" if key == "bare" else f"**{loop / bare_loop:.2f}×**",
            ])
    shutil.rmtree(spool)
    table(["command", "loop time (median)", "runs (s)", "signals/s", "µs per signal", "extra per stop",
           "ratio /bare"], rows)
    print(load.report())


# ---------------------------------------------------------------- section 2

def count_signals(cmd, sig):
    """Signals `sig` delivered to cmd's process tree, counted by perf."""
    res = subprocess.run(["perf", "stat", "-x,", "-e", "signal:signal_deliver", "--filter", f"sig == {sig}", "--",
                          *cmd], capture_output=True, text=True)
    m = re.search(r"^(\d+),", res.stderr, re.M)
    if res.returncode != 0 or not m:
        raise RuntimeError(f"perf stat failed: {res.stderr}")
    return int(m.group(1))


def jvm(args, exe, bins, mach, tmp, quiet):
    prog = bins["java"] + [str(args.npe_calls)]
    print(f"## 2. JVM: NullPointerExceptions from JIT-compiled code (`java BenchNpe {args.npe_calls}`)\n")
    print(quiet.section())
    load = OtherLoad(quiet)
    segvs = count_signals(prog, signal.SIGSEGV)
    version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    print(f"{version}; the bare run takes {segvs:,} SIGSEGVs (perf, signal:signal_deliver).\n")
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    vs = variants(exe, args.baseline_exe, spool)

    def once(key, prefix):
        t, rc, _, out, err = run(prefix + prog)
        if rc != 0 or "npes=" not in out:
            raise RuntimeError(f"{key} java BenchNpe exited {rc}: {err}")
        return t

    res = alternate(vs, args.runs, quiet, once)
    shutil.rmtree(spool)
    bare = statistics.median(res["bare"])
    rows = []
    for key, shown, _ in vs:
        m = statistics.median(res[key])
        rows.append([
            f"`{shown}java BenchNpe {args.npe_calls}`",
            f"**{m:.3f} s**",
            fmt_runs(res[key], "{:.3f}"),
            "1.00×" if key == "bare" else f"**{m / bare:.2f}×**",
            "–" if key == "bare" else f"{(m - bare) / segvs * 1e6:+.1f} µs",
        ])
    table(["command", "wall time (median)", "runs (s)", "ratio /bare", "extra per SIGSEGV"], rows)
    print(load.report())


# ---------------------------------------------------------------- section 3

def server_pid(p, traced):
    """The server's pid: p itself, or the child crashwatch started."""
    if not traced:
        return p.pid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = capture.descendants(p.pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise RuntimeError("crashwatch started no child")


def http_once(prefix, server, wrk_cmd, duration):
    p = subprocess.Popen(prefix + server, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    LIVE.append(p)
    perf = None
    try:
        port = int(wait_line(p, b"port=", 10).split("=")[1])
        pid = server_pid(p, bool(prefix))
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "signal:signal_generate", "--filter", "sig == 23",
                                 "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        LIVE.append(perf)
        start = time.monotonic()
        res = subprocess.run(wrk_cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                             timeout=duration + 30)
        elapsed = time.monotonic() - start
    finally:
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf_err = perf.communicate(timeout=10)[1]
            LIVE.remove(perf)
        stop_server(p)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed: {res.stderr}")
    m = re.search(r"Requests/sec:\s*([\d.]+)", res.stdout)
    bad = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", res.stdout)
    if not m or bad:
        raise RuntimeError(f"wrk: {res.stdout}")
    if p.returncode != 0:
        raise RuntimeError(f"server ended with {p.returncode}")
    urg = re.search(r"^(\d+),", perf_err, re.M)
    if not urg:
        raise RuntimeError(f"perf stat: {perf_err}")
    return float(m.group(1)), int(urg.group(1)) / elapsed


def go_http(args, exe, bins, mach, tmp, quiet):
    d = args.wrk_duration
    go = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    print(f"## 3. Go HTTP server with GC pressure (`bench_go_http`, {go}) under `wrk -t2 -c32 -d{d}s`\n")
    print(quiet.section())
    load = OtherLoad(quiet)
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    vs = variants(exe, args.baseline_exe, spool)
    wrk = [shutil.which("wrk"), "-t2", "-c32", f"-d{d}s"]
    res = alternate(vs, args.runs_http, quiet, lambda key, prefix: http_once(prefix, [bins["go"]], wrk, d))
    shutil.rmtree(spool)
    bare = statistics.median(r[0] for r in res["bare"])
    rows = []
    for key, shown, _ in vs:
        rps = [r[0] for r in res[key]]
        urg = [r[1] for r in res[key]]
        m = statistics.median(rps)
        rows.append([
            f"`{shown}bench_go_http`",
            f"**{m:,.0f} req/s**",
            fmt_runs(rps, "{:.0f}"),
            "1.000×" if key == "bare" else f"**{m / bare:.3f}×**",
            f"{statistics.median(urg):,.0f}",
            fmt_runs(urg, "{:.0f}"),
        ])
    table(["command", "req/s (median)", "runs", "ratio /bare", "SIGURG/s (median)", "SIGURG/s runs"], rows)
    print(load.report())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--runs-http", type=int, default=5)
    ap.add_argument("--signals", type=int, default=100_000)
    ap.add_argument("--npe-calls", type=int, default=1_000_000)
    ap.add_argument("--wrk-duration", type=int, default=5)
    ap.add_argument("--baseline-exe", help="another crashwatch binary, measured traced beside this one")
    ap.add_argument("--skip-java", action="store_true")
    ap.add_argument("--skip-go", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=600,
                    help="wait at most this many seconds in all for other load to stop (default 600; 0: never)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/crashwatch as it is")
    ap.add_argument("--exe", help="crashwatch binary to measure (implies --no-build)")
    args = ap.parse_args()
    started = time.monotonic()
    atexit.register(capture.kill_live)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    capture.resource.setrlimit(capture.resource.RLIMIT_CORE, (0, 0))
    if args.baseline_exe:
        args.baseline_exe = os.path.abspath(args.baseline_exe)

    ensure_tools(args)
    tmp = tempfile.mkdtemp(prefix="crashwatch-bench-stops-")
    atexit.register(shutil.rmtree, tmp, True)
    exe, bins = build(args, tmp)
    mach = capture.machine()
    quiet = Quiet(args.wait_quiet)
    print("# crashwatch: cost of ptrace stops\n")
    print(f"- machine: {mach['long']}")
    print(f"- crashwatch: {capture.git_rev(exe)}, {exe}")
    if args.baseline_exe:
        print(f"- baseline: {args.baseline_exe}")
    print(f"- {args.runs} runs of each variant (HTTP: {args.runs_http}), alternating, after one warm-up; "
          "RLIMIT_CORE 0\n")
    per_stop(args, exe, bins, mach, tmp, quiet)
    if not args.skip_java:
        jvm(args, exe, bins, mach, tmp, quiet)
    if not args.skip_go:
        go_http(args, exe, bins, mach, tmp, quiet)
    total = time.monotonic() - started
    print(f"Total time of this script: {total:.0f} s, of which {quiet.waited:.0f} s waiting for the machine to be idle.")


if __name__ == "__main__":
    sys.exit(main())
