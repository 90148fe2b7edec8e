#!/usr/bin/env python3
"""Log pass-through throughput and idle memory of `crashwatch run`.

    python3 benches/passthrough.py [--runs 5] [--lines 10000000] [--width 100]
                                   [--exe PATH]... [--flag=OPTION]...

Builds crashwatch (release; or measures each --exe given, e.g. the portable
build target/dist/crashwatch) and testdata/producer.c, then alternates, RUNS
times each, in the same run on the same machine:

    producer LINES out WIDTH | cat > /dev/null          (the peer)
    crashwatch run -- producer LINES out WIDTH > /dev/null

and prints the median wall time and throughput of each and their ratio
(peer time / crashwatch time: >= 1.0 means crashwatch is as fast). Then it
measures crashwatch's resident memory while it supervises `sleep`.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(exes):
    if not exes:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        exes = [os.path.join(ROOT, "target", "release", "crashwatch")]
    producer = os.path.join(tempfile.gettempdir(), "crashwatch-bench-producer")
    subprocess.run(["gcc", "-O2", "-o", producer, os.path.join(ROOT, "testdata", "producer.c")], check=True)
    return exes, producer


def timed(cmd, shell=False):
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        subprocess.run(cmd, shell=shell, stdout=null, check=True)
        return time.perf_counter() - start


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--exe", action="append", default=[], help="a crashwatch binary to measure (repeatable)")
    ap.add_argument("--flag", action="append", default=[], help="an option for `crashwatch run` (repeatable)")
    args = ap.parse_args()
    exes, producer = build([os.path.abspath(e) for e in args.exe])
    gib = args.lines * args.width / (1 << 30)
    spool = tempfile.mkdtemp(prefix="crashwatch-bench-")
    env = dict(os.environ, CRASHWATCH_SPOOL_DIR=spool)
    os.environ.update(env)
    prod = f"{producer} {args.lines} out {args.width}"
    peer, alone = [], []
    ours = {exe: [] for exe in exes}
    for _ in range(args.runs):
        alone.append(timed(prod, shell=True))
        peer.append(timed(f"{prod} | cat", shell=True))
        for exe in exes:
            ours[exe].append(timed([exe, "run", *args.flag, "--", producer, str(args.lines), "out", str(args.width)]))
    p = statistics.median(peer)
    print(f"data: {args.lines} lines x {args.width} B = {gib:.2f} GiB, {args.runs} runs each, median")
    a = statistics.median(alone)
    print(f"producer (no pipe)      {a:7.3f} s  {gib / a:6.2f} GiB/s   runs: {' '.join(f'{t:.3f}' for t in alone)}")
    print(f"producer | cat          {p:7.3f} s  {gib / p:6.2f} GiB/s   runs: {' '.join(f'{t:.3f}' for t in peer)}")
    for exe, times in ours.items():
        o = statistics.median(times)
        print(f"crashwatch run          {o:7.3f} s  {gib / o:6.2f} GiB/s   runs: {' '.join(f'{t:.3f}' for t in times)}")
        print(f"  {exe}: throughput ratio (crashwatch / cat): {p / o:.2f}x")

    samples = {exe: [] for exe in exes}
    for _ in range(args.runs):
        for exe in exes:
            child = subprocess.Popen([exe, "run", "--", "sleep", "30"], stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # settle: this measures the idle state, not start-up
            samples[exe].append(rss_kib(child.pid))
            child.terminate()
            child.wait()
    for exe, kib in samples.items():
        print(f"idle RSS supervising sleep: median {statistics.median(kib) / 1024:.2f} MiB "
              f"(samples KiB: {' '.join(map(str, kib))})  {exe}")

if __name__ == "__main__":
    sys.exit(main())
