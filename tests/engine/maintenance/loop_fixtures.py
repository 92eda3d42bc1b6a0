"""Waiting on the maintenance loop, shared by the maintenance tests."""

from __future__ import annotations

import time


def wait_for(condition, what: str, timeout: float = 60.0, every: float = 0.1):
    """Poll ``condition`` until it returns something true (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")
