"""A one-slot buffer between the subscription callback and the processing thread: never a backlog.

The camera keeps publishing while a frame is processed. Queuing those frames would add their processing time to the
latency of every later one; instead a new frame replaces the one waiting (which is counted as dropped), so the
processing thread always takes the newest frame and the end-to-end latency stays at most one processing time.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class LatestFrameSlot(Generic[Item]):
    """Thread-safe single slot: ``put`` from the callback, ``take`` from the worker."""

    def __init__(self):
        self._condition = threading.Condition()
        self._item: Item | None = None
        self._closed = False
        self.superseded = 0  # frames replaced before the worker took them

    def put(self, item: Item) -> bool:
        """Store ``item``, replacing a waiting one; returns True when one was replaced (dropped)."""
        with self._condition:
            replaced = self._item is not None
            if replaced:
                self.superseded += 1
            self._item = item
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Item | None:
        """The newest item, waiting up to ``timeout`` seconds for one; None on timeout or after ``close``."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget a waiting item (not counted as dropped: used on reset)."""
        with self._condition:
            self._item = None

    def close(self) -> None:
        """Wake the worker for good: ``take`` returns None from now on."""
        with self._condition:
            self._closed = True
            self._item = None
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
