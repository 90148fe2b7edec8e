#!/usr/bin/env python3
"""Symbolication: `crashwatch symbolicate` against `minidump-stackwalk
--use-local-debuginfo`, on the same dumps, in the same run.

    python3 benches/symbolicate.py [--runs 5]

Makes two real dumps with `crashwatch run`: a small C program (null write
three calls deep) and ripgrep built with full debug info (SIGABRT while it
searches /usr with 4 threads). Then alternates the two tools on each dump,
RUNS times, measuring wall time and peak RSS of each process (wait4), and
compares the function names of every frame of every thread.

Installs what it needs when missing (each once per machine, with cargo):
minidump-stackwalk, and ripgrep with debug info under
/var/tmp/crashwatch-bench/rg. MDSW and RG point at existing ones instead.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = "/var/tmp/crashwatch-bench"


def tool(env, name, install):
    path = os.environ.get(env) or shutil.which(name)
    if path:
        return path
    print(f"installing {name} (once)...", file=sys.stderr)
    install()
    return shutil.which(name) or os.path.join(CACHE, name, "bin", name)


def install_mdsw():
    subprocess.run(["cargo", "install", "--locked", "--quiet", "minidump-stackwalk"], check=True)


def install_rg():
    env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG="true", CARGO_PROFILE_RELEASE_STRIP="false")
    subprocess.run(["cargo", "install", "--locked", "--quiet", "ripgrep", "--root", os.path.join(CACHE, "rg")],
                   check=True, env=env)


def dump_of(crashwatch, argv, kill_after=None):
    spool = tempfile.mkdtemp(prefix="cw-bench-")
    proc = subprocess.Popen([crashwatch, "--spool-dir", spool, "run", "--"] + argv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after:
        time.sleep(kill_after)  # let it get busy: a dump of a program at work
        # The child is the tracer thread's, not the main thread's.
        kids = [int(k) for f in glob.glob(f"/proc/{proc.pid}/task/*/children") for k in open(f).read().split()]
        child = kids[0]
        os.kill(child, signal.SIGABRT)
    proc.wait()
    dumps = glob.glob(os.path.join(spool, "reports", "*", "minidump.dmp"))
    assert len(dumps) == 1, f"no dump of {argv}"
    return dumps[0]


def measure(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert status == 0, f"{argv} failed"
    return wall, usage.ru_maxrss / 1024, out  # ru_maxrss is KiB


def functions_ours(out):
    s = json.loads(out)
    return [[f.get("function") for f in t["frames"]] for t in s["threads"]]


def functions_theirs(out):
    s = json.loads(out)
    threads = []
    for t in s["threads"]:
        frames = []
        for f in t["frames"]:
            frames.append(f.get("function"))
            # stackwalk lists inlined calls (innermost first) inside their frame; ours
            # lists them as frames of their own, before the frame they were inlined into.
            for inl in f.get("inlines") or []:
                frames.insert(len(frames) - 1, inl.get("function"))
        threads.append(frames)
    return threads


def normalize(threads):
    # Both tools strip one leading underscore from names they cannot demangle
    # (a wholesym quirk); compare the names as such, unsymbolicated as None.
    return [[(f or "").lstrip("_") or None for f in t] for t in threads]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    crashwatch = os.path.join(ROOT, "target", "release", "crashwatch")
    mdsw = tool("MDSW", "minidump-stackwalk", install_mdsw)
    rg = os.environ.get("RG") or os.path.join(CACHE, "rg", "bin", "rg")
    if not os.path.exists(rg):
        install_rg()

    work = tempfile.mkdtemp(prefix="cw-bench-bin-")
    nested = os.path.join(work, "nested")
    subprocess.run(["gcc", "-g", "-O0", "-fno-omit-frame-pointer", "-o", nested,
                    os.path.join(ROOT, "testdata", "symbolicate", "nested.c")], check=True)
    dumps = {
        "small C program (nested.c, -O0)": dump_of(crashwatch, [nested]),
        "ripgrep with debug info (SIGABRT mid-search, 4 threads)":
            dump_of(crashwatch, [rg, "-j4", "-uuu", "--no-messages", "zzqqxxnotthere", "/usr"], kill_after=0.3),
    }
    print(f"machine: {os.cpu_count()} cores, "
          f"{next(l.split(':')[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))}")
    print(f"{args.runs} runs each, alternating, median\n")
    print("| dump | size | crashwatch | minidump-stackwalk | time ratio | memory ratio | frames |")
    print("|---|---|---|---|---|---|---|")
    for name, dump in dumps.items():
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(measure([crashwatch, "symbolicate", "--json", dump]))
            theirs.append(measure([mdsw, "--use-local-debuginfo", "--json", dump]))
        ow, om = statistics.median(r[0] for r in ours), statistics.median(r[1] for r in ours)
        tw, tm = statistics.median(r[0] for r in theirs), statistics.median(r[1] for r in theirs)
        a, b = normalize(functions_ours(ours[0][2])), normalize(functions_theirs(theirs[0][2]))
        count = sum(len(t) for t in a)
        same = "identical" if a == b else "DIFFER"
        print(f"| {name} | {os.path.getsize(dump) // 1024} KiB | {ow * 1000:.0f} ms, {om:.1f} MiB | "
              f"{tw * 1000:.0f} ms, {tm:.1f} MiB | {ow / tw:.2f}x | {om / tm:.2f}x | "
              f"{len(a)} threads, {count} frames, {same} |")
        print(f"  runs crashwatch: {' '.join(f'{r[0]*1000:.0f}ms/{r[1]:.0f}MiB' for r in ours)}")
        print(f"  runs stackwalk:  {' '.join(f'{r[0]*1000:.0f}ms/{r[1]:.0f}MiB' for r in theirs)}")
        if a != b:
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    print(f"  thread {i}: ours {x[:8]} theirs {y[:8]}")


if __name__ == "__main__":
    sys.exit(main())
