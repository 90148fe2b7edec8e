#!/usr/bin/env python3
"""The cost of --health-url: crashwatch's own CPU time (the sum of its
threads' run time in /proc/PID/task/*/schedstat, nanoseconds; the child's
not included) over a run of SECONDS, without a
health check and with one every 10 s (the default) and every 1 s, against
testdata/hang_server.c answering every request.

    python3 benches/health_check.py [--seconds 60] [--runs 3]
"""
import argparse, os, signal, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRASHWATCH = os.environ.get("CRASHWATCH", os.path.join(ROOT, "target/release/crashwatch"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total / 1e9


def run(server, seconds, interval):
    port = free_port()
    flags = [] if interval is None else ["--health-url", f"http://127.0.0.1:{port}/", "--health-interval", interval]
    with tempfile.TemporaryDirectory() as spool:
        env = dict(os.environ, CRASHWATCH_SPOOL_DIR=spool)
        env.pop("SENTRY_DSN", None)
        p = subprocess.Popen([CRASHWATCH, "run", *flags, "--", server, "100000000", str(port)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        cpu = cpu_seconds(p.pid)
        p.send_signal(signal.SIGTERM)
        p.wait()
    return cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    server = os.path.join(tempfile.mkdtemp(), "hang_server")
    subprocess.check_call(["gcc", "-O2", "-pthread", "-o", server, os.path.join(ROOT, "testdata/hang_server.c")])
    results = {None: [], "10s": [], "1s": []}
    for _ in range(args.runs):
        for interval in results:
            results[interval].append(run(server, args.seconds, interval))
    for interval, cpus in results.items():
        name = "no --health-url" if interval is None else f"--health-interval {interval}"
        print(f"{name:28} median {statistics.median(cpus) * 1000:7.2f} ms CPU in {args.seconds:.0f} s; "
              f"runs {' '.join(f'{c * 1000:.1f}' for c in cpus)} ms")


if __name__ == "__main__":
    main()
