# Run by tests/python.rs (3.11+): an ExceptionGroup.
def run_all():
    raise ExceptionGroup("2 jobs failed", [ValueError("job 1"), KeyError("job 2")])


run_all()
