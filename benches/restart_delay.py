#!/usr/bin/env python3
"""Delivery and restarts: how long crashwatch runs on after its child
crashed, when the Relay takes 5 s to answer, with `--delivery direct` (the
default: crashwatch sends before it exits, and a systemd restart waits for
it) and with `--delivery spool` (it only files the report; a `crashwatch
send --watch` beside it delivers).

    python3 benches/restart_delay.py [--runs 7] [--answer-after 5]

Each run: `crashwatch run --dsn http://KEY@127.0.0.1:PORT/42 -- CRASHER`,
where CRASHER is a C program whose thread 5 of 6 writes through NULL; the
HTTP server (this script) reads each envelope, waits --answer-after
seconds, then answers 200. "Crash to exit" is from the fatal stop (the
report's `ended_at` less its `capture_ms`) to the moment crashwatch's exit
was seen here. In spool mode a watcher runs the whole time, and the time
from the crash to the envelope's arrival at the server is noted too: the
report is not lost, only no longer waited for.
"""
import argparse
import glob
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deliver import KEY, ROOT, parse_time  # noqa: E402


class SlowRelay(http.server.BaseHTTPRequestHandler):
    arrivals = {}
    answer_after = 5.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        import gzip
        raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
        header = json.loads(raw.split(b"\n", 1)[0])
        if header.get("event_id"):
            SlowRelay.arrivals.setdefault(header["event_id"], time.time())
        time.sleep(SlowRelay.answer_after)
        reply = json.dumps({"id": header.get("event_id")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def one_run(crashwatch, crasher, dsn, spool, mode):
    subprocess.run([crashwatch, "--spool-dir", spool, "run", "--delivery", mode, "--group-window", "0",
                    "--max-reports-per-hour", "0", "--dsn", dsn, "--", crasher],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exited = time.time()
    reports = [json.load(open(p)) for p in glob.glob(os.path.join(spool, "reports", "*", "report.json"))]
    report = max(reports, key=lambda r: r["ended_at"])
    stop = parse_time(report["ended_at"]) - report["crash"]["capture_ms"] / 1000
    return report["id"], stop, exited - stop


def wait_for_arrival(event_id, limit=60):
    deadline = time.time() + limit
    while event_id not in SlowRelay.arrivals:
        if time.time() > deadline:
            raise SystemExit(f"report {event_id} never reached the server")
        time.sleep(0.05)
    return SlowRelay.arrivals[event_id]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--answer-after", type=float, default=5.0)
    args = ap.parse_args()
    SlowRelay.answer_after = args.answer_after
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    crashwatch = os.path.join(ROOT, "target", "release", "crashwatch")
    crasher = os.path.join(tempfile.mkdtemp(), "thread5_of_6")
    subprocess.run(["gcc", "-g", "-O0", "-pthread", "-o", crasher, os.path.join(ROOT, "testdata", "thread5_of_6.c")],
                   check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowRelay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://{KEY}@127.0.0.1:{server.server_address[1]}/42"

    results = {"direct": [], "spool": []}
    arrivals = []
    direct_spool = tempfile.mkdtemp(prefix="cw-bench-direct-")
    spool = tempfile.mkdtemp(prefix="cw-bench-spool-")
    watcher = subprocess.Popen([crashwatch, "--spool-dir", spool, "send", "--watch", "--dsn", dsn],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Alternate the modes, so that both see the same machine.
        for _ in range(args.runs):
            _, _, took = one_run(crashwatch, crasher, dsn, direct_spool, "direct")
            results["direct"].append(took)
            event_id, stop, took = one_run(crashwatch, crasher, dsn, spool, "spool")
            results["spool"].append(took)
            arrivals.append(wait_for_arrival(event_id) - stop)
            # Let the watcher's upload finish before the next crash.
            time.sleep(args.answer_after + 0.5)
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=30)
        server.shutdown()
    cpu = next(l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    print(f"machine: {os.cpu_count()} cores, {cpu}; {args.runs} runs per mode; "
          f"the server answers {args.answer_after:g} s after it has read an envelope")
    for mode in ("direct", "spool"):
        runs = results[mode]
        print(f"--delivery {mode}: crash to crashwatch's exit, median {statistics.median(runs) * 1000:.0f} ms "
              f"(runs: {' '.join(f'{t * 1000:.0f}' for t in runs)} ms)")
    ratio = statistics.median(results["spool"]) / statistics.median(results["direct"])
    print(f"spool / direct: {ratio:.3f}x")
    print(f"--delivery spool, crash to envelope at the server (sent by send --watch): median "
          f"{statistics.median(arrivals) * 1000:.0f} ms (runs: {' '.join(f'{t * 1000:.0f}' for t in arrivals)} ms)")
    print(f"send --watch exited {code} on SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
