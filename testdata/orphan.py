"""Leaves an orphan for crashwatch to adopt and reap.

The child (this script, parent: crashwatch) forks an intermediate process,
which forks the orphan and exits at once. The orphan blocks until told to go.
The script checks that the orphan was reparented to crashwatch (which only a
subreaper or PID 1 gets), tells it to exit, and checks that its zombie is
reaped. Exit 0 when both hold, 2 if it went to another parent, 3 if its
zombie was left.
"""
import os
import sys
import time

crashwatch = os.getppid()
pid_r, pid_w = os.pipe()
go_r, go_w = os.pipe()

intermediate = os.fork()
if intermediate == 0:
    orphan = os.fork()
    if orphan == 0:
        os.close(go_w)
        os.read(go_r, 1)  # blocks until the script closes go_w
        os._exit(0)
    os.write(pid_w, str(orphan).encode())
    os._exit(0)

os.close(go_r)
os.close(pid_w)
orphan = int(os.read(pid_r, 32))
os.waitpid(intermediate, 0)


def status_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split()[1]
    # Gone (ENOENT), or exiting while we read (ESRCH): no longer there.
    except (FileNotFoundError, ProcessLookupError):
        return None


deadline = time.monotonic() + 10
while status_field(orphan, "PPid") != str(crashwatch):
    if time.monotonic() > deadline:
        print(f"orphan reparented to {status_field(orphan, 'PPid')}, not crashwatch {crashwatch}")
        sys.exit(2)
    time.sleep(0.01)
print("orphan reparented to crashwatch", flush=True)

os.close(go_w)  # the orphan exits and becomes crashwatch's zombie
deadline = time.monotonic() + 10
while status_field(orphan, "State") is not None:
    if time.monotonic() > deadline:
        print(f"orphan left in state {status_field(orphan, 'State')}")
        sys.exit(3)
    time.sleep(0.01)
print("orphan reaped", flush=True)
