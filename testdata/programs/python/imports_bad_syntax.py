# Run by tests/python.rs: the SyntaxError is raised while importing.
import bad_syntax  # noqa: F401
