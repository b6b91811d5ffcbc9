"""Turns an owner's finished jobs into their private podcast feed: RSS 2.0 with the iTunes and Podcasting 2.0
namespaces, one item per MP3 still kept (a signed link as its enclosure, valid as long as the MP3 is), built with
ElementTree (never by pasting user text into markup) and answered conditionally (ETag, Last-Modified, 304) as
podcast apps poll it."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import flask

from endpoints.conditional import cacheable
from functions.download.chapters import MEDIA_TYPE as CHAPTERS_MEDIA_TYPE

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ElementTree.register_namespace("itunes", ITUNES)
ElementTree.register_namespace("podcast", PODCAST)
MEDIA_TYPE = "application/rss+xml"
FEED_TITLE = "vid2mp3"
FEED_DESCRIPTION = "Your MP3s from vid2mp3, while they are kept. This feed is private: do not share its address."


@dataclass(frozen=True)
class Episode:
    """One MP3 as the feed lists it."""

    guid: str
    title: str
    published: datetime
    duration_seconds: float
    size_bytes: int
    enclosure_url: str
    chapters_url: str | None = None
    image_url: str | None = None


def rfc_822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def element(parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str) \
        -> ElementTree.Element:
    child = ElementTree.SubElement(parent, tag, attributes)
    child.text = text
    return child


def feed_document(episodes: Iterable[Episode], last_modified: datetime, web_url: str | None) -> bytes:
    rss = ElementTree.Element("rss", {"version": "2.0"})
    channel = element(rss, "channel")
    element(channel, "title", FEED_TITLE)
    element(channel, "description", FEED_DESCRIPTION)
    if web_url:
        element(channel, "link", web_url)
    element(channel, "lastBuildDate", rfc_822(last_modified))
    element(channel, f"{{{ITUNES}}}author", FEED_TITLE)
    element(channel, f"{{{ITUNES}}}explicit", "false")
    # Private: no directory may list it, and no hosting service may import it.
    element(channel, f"{{{ITUNES}}}block", "Yes")
    element(channel, f"{{{PODCAST}}}locked", "yes")
    for episode in episodes:
        item = element(channel, "item")
        element(item, "title", episode.title)
        element(item, "guid", episode.guid, isPermaLink="false")
        element(item, "pubDate", rfc_822(episode.published))
        element(item, "enclosure", url=episode.enclosure_url, type="audio/mpeg", length=str(episode.size_bytes))
        element(item, f"{{{ITUNES}}}duration", str(round(episode.duration_seconds)))
        if episode.image_url:
            element(item, f"{{{ITUNES}}}image", href=episode.image_url)
        if episode.chapters_url:
            element(item, f"{{{PODCAST}}}chapters", url=episode.chapters_url, type=CHAPTERS_MEDIA_TYPE)
    return bytes(ElementTree.tostring(rss, encoding="utf-8", xml_declaration=True))


def feed_response(request: flask.Request, body: bytes, last_modified: datetime) -> flask.Response:
    """The feed, or 304 when the app's copy is current. The document holds nothing that changes between two polls
    unless an MP3 came or went (its links are fixed by each MP3's expiry), so its digest is its ETag."""
    return cacheable(request, body, MEDIA_TYPE, cache_control="private, no-cache", last_modified=last_modified,
                     # The address is a secret: no page that links here learns it from a Referer, no index lists it.
                     headers={"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                              "X-Robots-Tag": "noindex"})
