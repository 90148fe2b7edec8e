#!/usr/bin/env python3
"""How long `--oom-snapshot` holds the child: the snapshot's dump window.

    python3 benches/snapshot.py --exe PATH [--baseline-exe PATH]
                                [--runs 7] [--threads 1,50,500]

Compiles testdata/grow.c (gcc -O2 -pthread) into a temporary directory, then
for each thread count runs `crashwatch run --memory-limit 256M --oom-snapshot
50 -- grow`, starts the extra threads ("threads N"), grows to 160 MiB (past
the 128 MiB threshold), waits for crashwatch's line "snapshot of pid …
written: … the child held for X ms", and ends the child (EOF). X is from the
request's stop to the last thread resumed (the snapshot's `elapsed`). With
--baseline-exe the two binaries alternate run by run, after one discarded
warm-up of each. Prints a markdown table of medians with all runs.
"""
import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = re.compile(r"snapshot of pid \d+ written: (\d+) threads?, .*the child held for ([\d.]+) ms")


def wait_line(stream, pattern, deadline):
    """Reads lines of `stream` until one matches `pattern`; returns the match."""
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            m = pattern.search(line.decode(errors="replace"))
            if m:
                return m
    raise RuntimeError(f"no line matching {pattern.pattern!r} in time")


def one_run(exe, grow, extra, spool):
    p = subprocess.Popen(
        [exe, "--spool-dir", spool, "run", "--memory-limit", "256M", "--oom-snapshot", "50", "--", grow],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        if extra:
            p.stdin.write(f"threads {extra}\n".encode())
            p.stdin.flush()
            wait_line(p.stdout, re.compile(r"threads started"), deadline)
        p.stdin.write(b"up 160\n")
        p.stdin.flush()
        m = wait_line(p.stderr, HELD, deadline)
        p.stdin.close()
        p.wait(timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"{exe} exited {p.returncode}")
        return int(m.group(1)), float(m.group(2))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--baseline-exe")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", default="1,50,500")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="snapshot-bench-")
    grow = os.path.join(tmp, "grow")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", grow, os.path.join(ROOT, "testdata", "grow.c")], check=True)
    exes = [("after", os.path.abspath(args.exe))]
    if args.baseline_exe:
        exes.insert(0, ("before", os.path.abspath(args.baseline_exe)))
    print(f"| threads | {' | '.join(f'{n}: held median (ms) | {n}: runs' for n, _ in exes)} |")
    print("|---|" + "---|---|" * len(exes))
    for total in [int(x) for x in args.threads.split(",")]:
        held = {n: [] for n, _ in exes}
        for i in range(args.runs + 1):
            for name, exe in exes:
                spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
                threads, ms = one_run(exe, grow, total - 1, spool)
                if threads != total:
                    raise RuntimeError(f"{name}: snapshot of {threads} threads, expected {total}")
                if i > 0:  # the first round is a warm-up
                    held[name].append(ms)
        cells = []
        for name, _ in exes:
            cells += [f"**{statistics.median(held[name]):.2f}**", " ".join(f"{x:.2f}" for x in held[name])]
        print(f"| {total} | " + " | ".join(cells) + " |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
