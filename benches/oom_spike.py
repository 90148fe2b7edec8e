#!/usr/bin/env python3
"""--oom-snapshot against a sudden spike: `testdata/spike.c` allocates 96 MiB
in 4 pieces at once into a 96M limit under `--oom-snapshot 70`, and is killed
by the OOM killer. For each crashwatch binary given (alternating, one round
each per run), how often the OOM report carries a snapshot, what noticed the
crossing, the working set the snapshot was taken for against the threshold,
and the time from crashwatch seeing the crossing to the dump being written.

    python3 benches/oom_spike.py [--runs 9] NAME=CRASHWATCH [NAME=CRASHWATCH...]

Needs root and a writable cgroup v1 memory controller (or cgroup v2 with
--memory-limit working), like tests/oom.rs.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 96 << 20
PERCENT = 70


def build_spike(out_dir):
    out = os.path.join(out_dir, "spike")
    src = os.path.join(HERE, "..", "testdata", "spike.c")
    subprocess.run(["gcc", "-O2", "-g", "-o", out, src], check=True)
    return out


def when(text):
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    head, frac = text.rstrip("Z").split(".")
    return datetime.datetime.fromisoformat(f"{head}.{frac[:6]}")


def one_run(crashwatch, spike):
    with tempfile.TemporaryDirectory() as spool:
        env = dict(os.environ, CRASHWATCH_SPOOL_DIR=spool)
        env.pop("SENTRY_DSN", None)
        cmd = [crashwatch, "run", "--memory-limit", "96M", "--oom-snapshot", str(PERCENT), "--", spike, "96"]
        proc = subprocess.run(cmd, env=env, capture_output=True)
        listed = subprocess.run([crashwatch, "list", "--json"], env=env, capture_output=True, text=True)
        reports = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        if proc.returncode != 137 or len(reports) != 1 or reports[0].get("kind") != "oom":
            return {"error": f"exit {proc.returncode}, {len(reports)} reports"}
        snapshot = reports[0].get("snapshot")
        if not snapshot:
            return {"snapshot": False}
        return {
            "snapshot": True,
            "noticed_by": snapshot.get("noticed_by", "(not recorded)"),
            "over_mib": (snapshot["usage"] - LIMIT * PERCENT // 100) / (1 << 20),
            "percent": snapshot["usage"] * 100 / LIMIT,
            "to_dump_ms": (when(snapshot["taken_at"]) - when(snapshot["crossed_at"])).total_seconds() * 1000,
            "held_ms": snapshot.get("capture_ms"),
        }


def bare_ms(spike, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([spike, "96"], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("binaries", nargs="+", help="NAME=PATH of a crashwatch binary")
    args = parser.parse_args()
    binaries = [b.split("=", 1) for b in args.binaries]
    with tempfile.TemporaryDirectory() as work:
        spike = build_spike(work)
        results = {name: [] for name, _ in binaries}
        loads = []
        for _ in range(args.runs):
            for name, path in binaries:
                results[name].append(one_run(path, spike))
            loads.append(os.getloadavg()[0])
        print(f"spike 96 alone (no limit, gcc -O2): median {bare_ms(spike, args.runs):.1f} ms")
        print(f"load average during the runs: {min(loads):.1f}–{max(loads):.1f}")
        for name, _ in binaries:
            runs = results[name]
            taken = [r for r in runs if r.get("snapshot")]
            errors = [r["error"] for r in runs if "error" in r]
            line = f"{name}: snapshot in {len(taken)} of {len(runs)} OOM kills"
            if errors:
                line += f" ({len(errors)} runs failed: {errors[:3]})"
            print(line)
            if taken:
                by = sorted({r["noticed_by"] for r in taken})
                print(f"  noticed by: {', '.join(by)}")
                over = [r["over_mib"] for r in taken]
                print(
                    f"  working set at the snapshot: median {statistics.median([r['percent'] for r in taken]):.2f}% "
                    f"of the limit, {statistics.median(over):.2f} MiB past the threshold "
                    f"(runs: {' '.join(f'{o:.2f}' for o in over)})"
                )
                to_dump = [r["to_dump_ms"] for r in taken]
                print(
                    f"  crossing seen -> dump written: median {statistics.median(to_dump):.1f} ms "
                    f"(runs: {' '.join(f'{t:.1f}' for t in to_dump)})"
                )
                held = [r["held_ms"] for r in taken if r["held_ms"] is not None]
                if held:
                    print(f"  child held: median {statistics.median(held):.2f} ms")


if __name__ == "__main__":
    main()
