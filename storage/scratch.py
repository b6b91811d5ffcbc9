"""The instance's local scratch disk (a Knative Service's `emptyDir`): one private folder per attempt, removed when
the attempt leaves it, and what an earlier attempt killed on the same work left behind removed by the next."""

from __future__ import annotations

import shutil
import tempfile
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
