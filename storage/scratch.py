"""The instance's local scratch disk (a Knative Service's `emptyDir`): one private folder per attempt, removed when
the attempt leaves it, and what an earlier attempt killed on the same work left behind removed by the next (or, for a
function whose folders no other process uses, all of them when it starts); and a budget of its bytes, shared by a
process's requests, so that the disk never fills past its size limit."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def work_folder(parent: Path, prefix: str, *, clear_stale: bool = False) -> Iterator[Path]:
    """A new folder `<prefix><random>` under `parent`, removed on leaving. With `clear_stale`, the folders of the same
    prefix go first: the caller holds the work now, so they can only be a killed attempt's."""
    if clear_stale:
        for stale in parent.glob(f"{glob_escaped(prefix)}*"):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def glob_escaped(text: str) -> str:
    return "".join(f"[{character}]" if character in "*?[" else character for character in text)


# The (folder, prefix) pairs this process has cleared at its start.
_cleared_at_start: set[tuple[Path, str]] = set()
_clearing = threading.Lock()


def clear_left_behind(parent: Path, prefix: str) -> int:
    """Removes every folder `<prefix>*` under `parent`, once per process (at its start: what a killed process left,
    when no other process uses these folders); how many. Once: a process that loads a function's module again (a
    test's functions-framework app per request) must not remove the folders of its own uploads still running."""
    with _clearing:
        if (parent.resolve(), prefix) in _cleared_at_start:
            return 0
        _cleared_at_start.add((parent.resolve(), prefix))
    cleared = 0
    for stale in parent.glob(f"{glob_escaped(prefix)}*"):
        shutil.rmtree(stale, ignore_errors=True)
        cleared += 1
    return cleared


class ScratchFull(Exception):
    """The instance's scratch disk has no room for this work now (others' work holds it): retry shortly."""


class ScratchBudget:
    """The bytes the requests of one process may hold on the scratch disk at once. A Knative Service's `emptyDir`
    has a `sizeLimit`, and a pod that writes past it is evicted with every request it serves: each request takes
    what it will write before writing it, and is refused (ScratchFull) rather than let the disk fill."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used = 0
        self._lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[ScratchHolding]:
        """A holding that takes bytes as its work grows and gives them all back on leaving."""
        holding = ScratchHolding(self)
        try:
            yield holding
        finally:
            with self._lock:
                self.used -= holding.bytes
            holding.bytes = 0

    def _take(self, holding: ScratchHolding, size: int) -> None:
        with self._lock:
            if self.used + size > self.limit_bytes:
                raise ScratchFull(f"{self.used} of {self.limit_bytes} bytes of scratch are taken; {size} more asked")
            self.used += size
            holding.bytes += size


class ScratchHolding:
    def __init__(self, budget: ScratchBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def take(self, size: int) -> None:
        if size > 0:
            self.budget._take(self, size)

    def at_least(self, size: int) -> None:
        """Holds `size` bytes in all (takes the difference, if any)."""
        self.take(size - self.bytes)
