"""What a function read from MongoDB about a credential (an account's generation, an API key), kept for a few
seconds: every request checks its credential, and a change (a password, a revocation) must still reach every function
within that time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")
# Past this many entries the stale ones go (made-up key ids must not grow a process without bound).
MAX_ENTRIES = 10_000


class RecentReads(Generic[Value]):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, Value]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, read: Callable[[str], Value]) -> Value:
        """The value kept for `key` if read less than `seconds` ago, else `read(key)`, kept."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.seconds:
            return entry[1]
        value = read(key)
        self.put(key, value)
        return value

    def put(self, key: str, value: Value) -> None:
        moment = time.monotonic()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {name: entry for name, entry in self._entries.items()
                                 if moment - entry[0] < self.seconds}
            self._entries[key] = (moment, value)
