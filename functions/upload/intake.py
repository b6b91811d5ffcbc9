"""Reads an upload request as a stream: a multipart form with one file part (and optional fields, and a client's
`cover` and `chapters` parts), or a raw body.

Nothing is buffered beyond one read: the file's bytes are handed on chunk by chunk as they arrive, and the form's
fields and small parts are collected as they pass (they may come before or after the file), each up to its limit.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData, State

from api.limits import MAX_CHAPTERS_BYTES, MAX_COVER_BYTES, MAX_FIELD_BYTES, MAX_PARTS
from events.options import FIELDS as OPTION_FIELDS
from transcoding.media_formats import SNIFF_BYTES, sniff_container

READ_BYTES = 1024 * 1024
MAX_FILENAME_CHARS = 120
# Parts of a form that are not the video (file parts or fields alike): a client that uploads an extract sends the
# video's cover frame and the chapters its container could not carry (transcoding/extraction.py checks them).
SIDE_PARTS = {"cover": MAX_COVER_BYTES, "chapters": MAX_CHAPTERS_BYTES}
# What may follow a form's closing delimiter (RFC 2046's epilogue, which clients leave empty or a line long).
MAX_EPILOGUE_BYTES = 64 * 1024


class BadUpload(ValueError):
    """The request is not an upload we can take; the message says why."""


def safe_filename(name: str | None) -> str:
    """The original name, kept only as a label: no directories, control characters, quotes or odd spaces."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    name = re.sub(r"[\"'`<>|:*?;]", "_", name).strip(" .")
    return name[:MAX_FILENAME_CHARS] or "video"


@dataclass
class Upload:
    filename: str
    fields: dict[str, str] = field(default_factory=dict)
    chunks: Iterator[bytes] = field(default_factory=lambda: iter(()))
    container: str | None = None
    # The side parts, as sent; one longer than its limit is kept only as far as one byte past it (so it is known to
    # be too long) and refused by its checker.
    parts: dict[str, bytes] = field(default_factory=dict)


class Readable(Protocol):
    """A request's body, or an imported video being fetched (url_import.py)."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_stream(stream: Readable) -> Iterator[bytes]:
    return iter(lambda: stream.read(READ_BYTES), b"")


def open_upload(stream: Readable, content_type: str, query_filename: str | None) -> Upload:
    """Starts reading the request: returns once the file's first bytes are known (to tell its container)."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise BadUpload("multipart/form-data without a boundary")
        upload = Upload(filename="video")
        upload.chunks = multipart_file(read_stream(stream), boundary.encode(), upload)
    else:
        upload = Upload(filename=safe_filename(query_filename), chunks=read_stream(stream))
    upload.chunks, head = peek(upload.chunks, SNIFF_BYTES)
    if not head:
        raise BadUpload("the upload is empty")
    upload.container = sniff_container(head)
    return upload


def peek(chunks: Iterator[bytes], size: int) -> tuple[Iterator[bytes], bytes]:
    """The first `size` bytes (fewer at the end of the stream), and an iterator that still yields everything."""
    head = b""
    taken: list[bytes] = []
    for chunk in chunks:
        taken.append(chunk)
        head += chunk
        if len(head) >= size:
            break

    def replay() -> Iterator[bytes]:
        yield from taken
        yield from chunks

    return replay(), head[:size]


def next_event(decoder: MultipartDecoder) -> object:
    try:
        return decoder.next_event()
    except BadUpload:
        raise
    except ValueError as error:
        raise BadUpload(f"the multipart body is malformed: {error}") from None
    except RequestEntityTooLarge:  # werkzeug's answer to too many parts is an HTML page (found by schemathesis)
        raise BadUpload(f"the form has more than {MAX_PARTS} parts: send one file and the options") from None


def multipart_file(raw: Iterator[bytes], boundary: bytes, upload: Upload) -> Iterator[bytes]:
    """Yields the data of the form's one file part; fills upload.fields and upload.filename on the way."""
    # Field sizes are limited below, and the epilogue; the decoder holds one read at a time otherwise, so its own
    # memory cap is not needed.
    decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
    in_file = False
    current: str | None = None  # the name of the field or side part being read
    in_side_part = False
    files_seen = 0
    field_value = bytearray()
    for chunk in itertools.chain(raw, [None]):
        decoder.receive_data(chunk)
        while not isinstance(event := next_event(decoder), NeedData):
            # A field named as an option is the option (`cover=attached`, `chapters=none`); the picture and the
            # chapters JSON are file parts.
            if isinstance(event, File | Field) and event.name in SIDE_PARTS \
                    and (isinstance(event, File) or event.name not in OPTION_FIELDS):
                if event.name in upload.parts:
                    raise BadUpload(f"send one {event.name!r} part")
                in_file, in_side_part, current, field_value = False, True, event.name, bytearray()
                upload.parts[current] = b""
            elif isinstance(event, File):
                files_seen += 1
                if files_seen > 1:
                    raise BadUpload("send exactly one file per upload")
                upload.filename = safe_filename(event.filename)
                in_file, in_side_part, current = True, False, None
            elif isinstance(event, Field):
                in_file, in_side_part, current, field_value = False, False, event.name, bytearray()
            elif isinstance(event, Data):
                if in_file:
                    if event.data:
                        yield bytes(event.data)
                elif in_side_part and current is not None:
                    # Kept up to one byte past the limit: enough to refuse it as too long, never more.
                    field_value += event.data[:SIDE_PARTS[current] + 1 - len(field_value)]
                    if not event.more_data:
                        upload.parts[current] = bytes(field_value)
                elif current is not None:
                    field_value += event.data
                    if len(field_value) > MAX_FIELD_BYTES:
                        raise BadUpload(f"form field {current!r} is too long")
                    if not event.more_data:
                        upload.fields[current] = field_value.decode("utf-8", "replace")
            elif isinstance(event, Epilogue):
                if files_seen == 0:
                    raise BadUpload("the form has no file part")
                return
        if chunk is None:
            break
        # The decoder reads on to the body's end (its Epilogue comes only then, so a body cut short after the form
        # is refused by the server as it is read: runtime/server.py, IncompleteBody), holding what follows the
        # closing delimiter meanwhile: bounded here.
        if decoder.state == State.EPILOGUE and len(decoder.buffer) > MAX_EPILOGUE_BYTES:
            raise BadUpload(f"more than {MAX_EPILOGUE_BYTES} bytes follow the form's closing delimiter")
    raise BadUpload("the multipart body ended early")
