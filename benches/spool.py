#!/usr/bin/env python3
"""The spool with thousands of reports: `list`, `show`, and filing (which
prunes the spool after each report).

    python3 benches/spool.py [--reports 5000] [--runs 7] [--exe PATH]

Builds crashwatch (release) unless --exe is given, files one real crash
report (a shell that prints 100 lines and dies of SIGSEGV: an 18 KiB
report.json, a 27 KiB minidump, its stacks), copies it to REPORTS reports
(new ids, one a minute, five crash signatures) in a temporary spool, then
alternates, RUNS times each, on the same machine:

    crashwatch list                  the table (reads every report's head)
    cat reports/*/report.json | grep -c ended_at     (the peer: every byte)
    crashwatch list --json           every report, whole
    crashwatch show ID / show        one report / the newest
    crashwatch send --dsn DOWN       nothing to send; prunes (under limits)
    crashwatch run -- sh -c 'exit 3' files a report and prunes
    du -s reports                    (the peer of a prune under its limits)

and prints each median wall time and peak RSS. Last, three times on a fresh
copy: a filing whose --spool-max-use is exceeded, so that the oldest reports
are deleted (every head read, the signatures weighed).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOWN = "http://e12d836b15bb49d7bbf99e64295d995b@127.0.0.1:9/42"


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "crashwatch")


def timed(cmd, env):
    """Wall time and peak RSS (KiB, as /usr/bin/time measures it: a child
    forked from this Python would start from Python's high-water mark)."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.monotonic()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.monotonic() - start
        return wall, int(rss.read().split()[-1])


def make_spool(exe, spool, n):
    env = dict(os.environ, CRASHWATCH_SPOOL_DIR=spool)
    script = 'for i in $(seq 100); do echo "line $i of the server log, request 4f1c2e9a, some text"; done; kill -SEGV $$'
    subprocess.run([exe, "run", "--", "sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reports = os.path.join(spool, "reports")
    (orig,) = [d for d in os.listdir(reports) if len(d) == 32]
    base = json.load(open(os.path.join(reports, orig, "report.json")))
    t0 = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=n)
    for i in range(n - 1):
        rid = uuid.uuid4().hex
        d = os.path.join(reports, rid)
        shutil.copytree(os.path.join(reports, orig), d)
        r = dict(base, id=rid, signature=f"{base.get('signature', '')}|kind{i % 5}")
        r["ended_at"] = (t0 + datetime.timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
        json.dump(r, open(os.path.join(d, "report.json"), "w"), indent=2)
    return orig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--exe")
    args = ap.parse_args()
    exe = args.exe or build()
    with tempfile.TemporaryDirectory() as tmp:
        spool = os.path.join(tmp, "spool")
        one = make_spool(exe, spool, args.reports)
        env = dict(os.environ, CRASHWATCH_SPOOL_DIR=spool)
        reports = os.path.join(spool, "reports")
        cases = [
            ("crashwatch list", [exe, "list"]),
            ("cat reports/*/report.json | grep (peer)", f"cat {reports}/*/report.json | grep -c ended_at"),
            ("crashwatch list --json", [exe, "list", "--json"]),
            ("crashwatch show ID", [exe, "show", one]),
            ("crashwatch show (the newest)", [exe, "show"]),
            ("crashwatch send (nothing to send; prune)", [exe, "send", "--dsn", DOWN, "--timeout", "1"]),
            ("crashwatch run -- sh -c 'exit 3' (file, prune)", [exe, "run", "--", "sh", "-c", "exit 3"]),
            ("du -s reports (peer of the prune)", ["du", "-s", reports]),
        ]
        results = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, cmd in cases:
                results[name].append(timed(cmd, env))
        count = len([d for d in os.listdir(reports) if len(d) == 32])
        print(f"{count} reports, {args.runs} runs each, alternating")
        print("| command | median | peak RSS |")
        print("|---|---|---|")
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            rss = statistics.median(r for _, r in runs)
            print(f"| `{name}` | {wall * 1000:.0f} ms | {rss / 1024:.1f} MiB |")
        # Over its limit: a fresh copy each time, since the prune deletes.
        used = int(subprocess.run(["du", "-s", "--block-size=1M", reports], capture_output=True, text=True).stdout.split()[0])
        limit = f"{used * 85 // 100}M"
        pressed = []
        for _ in range(3):
            copy = os.path.join(tmp, "copy")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(spool, copy, symlinks=True)
            cenv = dict(os.environ, CRASHWATCH_SPOOL_DIR=copy)
            pressed.append(timed([exe, "run", "--spool-max-use", limit, "--", "sh", "-c", "exit 3"], cenv))
            left = len([d for d in os.listdir(os.path.join(copy, "reports")) if len(d) == 32])
        wall = statistics.median(w for w, _ in pressed)
        print(f"| `crashwatch run --spool-max-use {limit}` ({used} MiB used; {count + 1 - left} deleted) | "
              f"{wall * 1000:.0f} ms | {statistics.median(r for _, r in pressed) / 1024:.1f} MiB |")


if __name__ == "__main__":
    sys.exit(main())
