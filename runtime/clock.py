"""The one clock every record is stamped with (timezone-aware UTC), and how a moment is written in JSON answers."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
