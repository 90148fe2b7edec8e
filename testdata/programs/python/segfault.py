# Run by tests/python.rs with -X faulthandler: dies of SIGSEGV in ctypes.
import ctypes


def poke():
    ctypes.string_at(0)


poke()
