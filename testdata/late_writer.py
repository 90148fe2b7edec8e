"""Writes one line when told to (SIGUSR1), and records how the write went.

Prints "ready PID", then waits. On SIGUSR1 it writes a line to stdout and
writes "written" or the error's name (EPIPE once nobody reads the pipe) to
the file named by its argument, then exits 0. Python ignores SIGPIPE, so a
write to a pipe without a reader fails with EPIPE instead of killing it.
"""
import errno
import os
import signal
import sys

record = sys.argv[1]


def write_line(*_):
    try:
        sys.stdout.write("late line\n")
        sys.stdout.flush()
        result = "written"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    # Written whole, then renamed: the test waits for the file to appear.
    with open(record + ".tmp", "w") as f:
        f.write(result)
    os.rename(record + ".tmp", record)
    os._exit(0)


signal.signal(signal.SIGUSR1, write_line)
print(f"ready {os.getpid()}", flush=True)
while True:
    signal.pause()
