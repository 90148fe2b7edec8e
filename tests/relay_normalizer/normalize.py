"""Runs events through Relay's own store normalizer (the sentry-relay wheel).

Reads a JSON list of events on stdin and writes the list of normalized
events on stdout, in the same order. Used by tests/sentry_normalize.rs.
"""
import json
import sys

from sentry_relay.processing import StoreNormalizer


def main():
    events = json.load(sys.stdin)
    normalizer = StoreNormalizer(project_id=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    json.dump([normalizer.normalize_event(event) for event in events], sys.stdout)


if __name__ == "__main__":
    main()
