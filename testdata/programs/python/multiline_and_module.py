# Run by tests/python.rs: a module-qualified exception type, then (mode 2)
# a message spanning lines.
import json
import sys

if sys.argv[1] == "json":
    json.loads("{")
else:
    raise ValueError("bad rows:\nrow 1: empty\nrow 2: empty")
