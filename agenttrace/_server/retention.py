"""Retention: the traces older than ``--retention`` deleted in the background, a few at a time.

A thread of the server's process sweeps at start, then every minute (or a tenth of the age, if
that is shorter): it deletes the traces that started before now minus the age, the oldest first,
:data:`BATCH` to a transaction, pausing between transactions so that ingest (which waits for the
SQLite writer's lock) is never held up for longer than one batch. Several servers on one
PostgreSQL may all run it: one sweeps at a time (an advisory lock), the others skip their turn.
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING

from agenttrace._core.errors import warn_once

if TYPE_CHECKING:
    from agenttrace._server.store import Store

__all__ = ["BATCH", "Retention", "parse_age"]

BATCH = 100  # traces deleted in one transaction
PAUSE = 0.05  # seconds between two batches: the writer's lock is free for ingest meanwhile
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"([0-9]{1,9})\s*([smhdw])")


def parse_age(text: str) -> float | None:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` in seconds; None for anything else."""
    found = _AGE.fullmatch(text.strip().lower())
    if found is None or int(found.group(1)) == 0:
        return None
    return float(int(found.group(1)) * _UNITS[found.group(2)])


class Retention:
    """The background deletion of the traces of ``store`` that started more than ``age`` seconds ago."""

    def __init__(self, store: Store, age: float) -> None:
        self.store = store
        self.age = age
        self.interval = min(60.0, max(age / 10, 1.0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agenttrace-retention", daemon=True)

    def start(self) -> None:
        """Sweep now, then every :attr:`interval` seconds, until :meth:`stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch under way (its transaction completes)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def sweep(self) -> int:
        """Delete every trace that is too old now, BATCH at a time; how many were deleted."""
        cutoff = time.time_ns() - int(self.age * 1e9)
        deleted = 0
        while not self._stop.is_set():
            done = self.store.expire(cutoff, BATCH)
            deleted += done
            if done < BATCH:
                break
            self._stop.wait(PAUSE)
        return deleted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except self.store.errors as exc:
                # The database failing now and then must not end retention; the next sweep retries.
                warn_once(f"server-retention-{type(exc).__name__}", f"server: retention failed: {exc}; retrying")
            self._stop.wait(self.interval)
