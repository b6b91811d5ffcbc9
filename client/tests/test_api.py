"""The client's reading of Server-Sent Events (events split across chunks, comments between them), and the multipart
body it streams from files."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from vid2mp3_client.api import FilePart, MultipartBody, server_sent_events


def test_server_sent_events_parser_handles_split_chunks_and_comments() -> None:
    body = b'retry: 2000\n\n: keep-alive\n\nid: 1\nevent: job\ndata: {"state":"d\xc3\xa9j\xc3\xa0"}\n\n'
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]  # splits a UTF-8 character too
    assert list(server_sent_events(iter(chunks))) == [("job", '{"state":"déjà"}')]




def test_a_multipart_body_is_read_from_its_files_with_its_length_known(tmp_path: Path) -> None:
    extract, cover = tmp_path / "audio.mka", tmp_path / "frame.jpg"
    extract.write_bytes(bytes(range(256)) * 5000)
    cover.write_bytes(b"\xff\xd8 a picture")
    reported: list[int] = []
    parts = [FilePart("file", extract, 'Le "best"\nof.mkv', "audio/x-matroska"),
             FilePart("cover", cover, "frame.jpg", "image/jpeg")]
    with MultipartBody(parts, reported.append, "b0undary") as body:
        sent = b"".join(iter(lambda: body.read(7000), b""))
        assert len(body) == len(sent) == sum(reported)
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n"
                                                  + sent)
    read = [(part.get_param("name", header="content-disposition"), part.get_filename(), part.get_content_type(),
             part.get_payload(decode=True)) for part in message.iter_parts()]
    assert read == [("file", "Le %22best%22%0Aof.mkv", "audio/x-matroska", extract.read_bytes()),
                    ("cover", "frame.jpg", "image/jpeg", cover.read_bytes())]
