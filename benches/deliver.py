#!/usr/bin/env python3
"""Delivery: from a crash to its envelope accepted by a Relay stand-in on
loopback, and the envelope's size against the raw minidump.

    python3 benches/deliver.py [--runs 7]

Each run: `crashwatch run --dsn http://KEY@127.0.0.1:PORT/42 -- CRASHER`,
where CRASHER is a C program whose thread 5 of 6 writes through NULL. A
small HTTP server (this script) answers 200 to every envelope and notes
when it arrived and its sizes. "Crash to accepted" is the time from the
fatal stop to the server's answer: the report's `ended_at` (the child
reaped, after the capture) less its `capture_ms`, to the arrival time.
Everything after the dump — symbolication in a helper process, the
report, the outbox (fsync'd), gzip, the POST — is in it.
"""
import argparse
import datetime
import glob
import gzip
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "0123456789abcdef0123456789abcdef"


class Relay(http.server.BaseHTTPRequestHandler):
    arrivals = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.time()
        raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
        header = json.loads(raw.split(b"\n", 1)[0])
        Relay.arrivals.append({"at": now, "event_id": header.get("event_id"), "wire": len(body), "raw": len(raw)})
        reply = json.dumps({"id": header.get("event_id")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def parse_time(text):
    # RFC 3339 with up to nanoseconds; Python takes microseconds.
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        frac, tz = rest[: rest.index("+")], rest[rest.index("+"):]
        text = f"{head}.{frac[:6]}{tz}"
    return datetime.datetime.fromisoformat(text).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    crashwatch = os.path.join(ROOT, "target", "release", "crashwatch")
    crasher = os.path.join(tempfile.mkdtemp(), "thread5_of_6")
    subprocess.run(["gcc", "-g", "-O0", "-pthread", "-o", crasher, os.path.join(ROOT, "testdata", "thread5_of_6.c")],
                   check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://{KEY}@127.0.0.1:{server.server_address[1]}/42"

    latencies, rows = [], []
    for _ in range(args.runs):
        spool = tempfile.mkdtemp(prefix="cw-bench-")
        subprocess.run([crashwatch, "--spool-dir", spool, "run", "--dsn", dsn, "--", crasher],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report_path = glob.glob(os.path.join(spool, "reports", "*", "report.json"))[0]
        report = json.load(open(report_path))
        arrival = next(a for a in Relay.arrivals if a["event_id"] == report["id"])
        stop = parse_time(report["ended_at"]) - report["crash"]["capture_ms"] / 1000
        latencies.append(arrival["at"] - stop)
        rows.append((report["crash"]["minidump"]["size"], arrival["raw"], arrival["wire"]))
    server.shutdown()
    cpu = next(l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    print(f"machine: {os.cpu_count()} cores, {cpu}; {args.runs} runs")
    print(f"crash to envelope accepted: median {statistics.median(latencies) * 1000:.0f} ms "
          f"(runs: {' '.join(f'{l * 1000:.0f}' for l in latencies)} ms)")
    dump, raw, wire = (statistics.median(r[i] for r in rows) for i in range(3))
    print(f"minidump {dump / 1024:.1f} KiB; envelope {raw / 1024:.1f} KiB "
          f"(event + minidump + log tail); on the wire, gzip: {wire / 1024:.1f} KiB ({wire / dump:.2f}x the minidump)")


if __name__ == "__main__":
    sys.exit(main())
