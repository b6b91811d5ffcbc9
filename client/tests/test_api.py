"""The client's reading of Server-Sent Events: events split across chunks and comments between them."""

from __future__ import annotations

from vid2mp3_client.api import server_sent_events


def test_server_sent_events_parser_handles_split_chunks_and_comments() -> None:
    body = b'retry: 2000\n\n: keep-alive\n\nid: 1\nevent: job\ndata: {"state":"d\xc3\xa9j\xc3\xa0"}\n\n'
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]  # splits a UTF-8 character too
    assert list(server_sent_events(iter(chunks))) == [("job", '{"state":"déjà"}')]


