"""Checks session and check-in payloads with what the sentry-relay wheel offers.

The wheel has no normalizer for `session`, `sessions` or `check_in` items.
What it has, and what Relay applies to them:
  * `parse_release`: Relay's release validation (a session with a release it
    refuses is dropped);
  * `StoreNormalizer`: an event carrying the payload's environment (and
    release) comes back with `errors` when Relay's `validate_environment`
    would remove it from a session;
  * `DataCategory`: the rate-limit categories crashwatch honours for them
    (`session`, `monitor`) exist.
Reads a JSON list of payloads on stdin; writes the list of problems found.
"""
import json
import sys

from sentry_relay.consts import DataCategory
from sentry_relay.processing import StoreNormalizer, parse_release


def main():
    payloads = json.load(sys.stdin)
    normalizer = StoreNormalizer(project_id=1)
    problems = []
    for category in ("session", "monitor"):
        if DataCategory.parse(category) in (None, DataCategory.UNKNOWN):
            problems.append({"category": category, "problem": "not a data category"})
    for payload in payloads:
        attrs = payload.get("attrs") or {}
        release = attrs.get("release", payload.get("release"))
        environment = attrs.get("environment", payload.get("environment"))
        if release is not None:
            try:
                parse_release(release)
            except Exception as e:  # the wheel raises one class per reason
                problems.append({"payload": payload, "problem": type(e).__name__})
        event = {}
        if release is not None:
            event["release"] = release
        if environment is not None:
            event["environment"] = environment
        normalized = normalizer.normalize_event(event)
        if normalized.get("errors"):
            problems.append({"payload": payload, "problem": normalized["errors"]})
        for key in ("release", "environment"):
            if key in event and normalized.get(key) != event[key]:
                problems.append({"payload": payload, "problem": f"{key} changed to {normalized.get(key)!r}"})
    json.dump(problems, sys.stdout)


if __name__ == "__main__":
    main()
