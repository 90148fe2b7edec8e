"""A demo 'server' that logs a little, then dies of a segmentation fault in C
code (a NULL read through ctypes): the kind of crash an in-process reporter
misses. Used by the first command of the README."""
import ctypes
import sys

print("demo server: listening on :8080")
print("demo server: handling request 1")
print("demo server: warning: cache is cold", file=sys.stderr)
print("demo server: handling request 2 (this one crashes)")
ctypes.string_at(0)
