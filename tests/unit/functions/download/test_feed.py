"""The podcast feed document (functions/download/feed.py): user text stays text, whatever it holds, and each
episode says what podcast apps read."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta, timezone

from functions.download.feed import ITUNES, PODCAST, Episode, feed_document

LAST = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)


def episode(**fields: object) -> Episode:
    base: dict[str, object] = {"guid": "a" * 32, "title": "Talk", "published": LAST, "duration_seconds": 61.6,
                               "size_bytes": 1234, "enclosure_url": "https://dl.example/a?expires=1&key=k&signature=s"}
    return Episode(**{**base, **fields})  # type: ignore[arg-type]


def test_markup_in_a_title_is_text_not_markup() -> None:
    hostile = '</title><script>alert(1)</script>&amp; "x" \u00e9'
    document = feed_document([episode(title=hostile)], LAST, None)
    (item,) = ElementTree.fromstring(document).iter("item")  # noqa: S314 - our own document
    assert item.findtext("title") == hostile
    assert b"<script>" not in document


def test_an_episode_names_its_enclosure_duration_date_and_chapters() -> None:
    published = datetime(2026, 12, 7, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    document = feed_document([episode(published=published, chapters_url="https://dl.example/c.json"),
                              episode(guid="b" * 32)], LAST, "https://web.example/")
    channel = ElementTree.fromstring(document).find("channel")  # noqa: S314 - our own document
    assert channel is not None and channel.findtext("link") == "https://web.example/"
    assert channel.findtext("lastBuildDate") == "Tue, 08 Dec 2026 01:02:03 GMT"
    assert channel.findtext(f"{{{ITUNES}}}block") == "Yes"
    first, second = channel.iter("item")
    assert first.findtext("pubDate") == "Mon, 07 Dec 2026 21:00:00 GMT"
    enclosure = first.find("enclosure")
    assert enclosure is not None and enclosure.attrib == {
        "url": "https://dl.example/a?expires=1&key=k&signature=s", "type": "audio/mpeg", "length": "1234"}
    assert first.findtext(f"{{{ITUNES}}}duration") == "62"
    chapters = first.find(f"{{{PODCAST}}}chapters")
    assert chapters is not None and chapters.attrib["type"] == "application/json+chapters"
    assert second.find(f"{{{PODCAST}}}chapters") is None
    guid = second.find("guid")
    assert guid is not None and guid.text == "b" * 32 and guid.attrib["isPermaLink"] == "false"
