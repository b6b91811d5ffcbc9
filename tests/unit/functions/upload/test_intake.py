"""Reading an upload as it streams: safe name labels, a form's one file part whole with fields before and after it,
forms refused (two files, none, too many parts, a long field), a raw body, the container told however reads split."""

from __future__ import annotations

import io

import pytest

from api.limits import MAX_FIELD_BYTES, MAX_PARTS
from functions.upload.intake import (
    MAX_EPILOGUE_BYTES,
    MAX_FILENAME_CHARS,
    BadUpload,
    open_upload,
    peek,
    safe_filename,
)

BOUNDARY = "----vid2mp3-test-boundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
# An Ogg page header and more than a sniff's 512 bytes.
OGG = b"OggS\x00\x02" + bytes(range(256)) * 8


@pytest.mark.parametrize(("name", "label"), [
    ("holiday.mp4", "holiday.mp4"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\Videos\\clip.mkv", "clip.mkv"),
    ("dir/sub\\name.webm", "name.webm"),
    ("a\x00b\r\nc\t.mp4", "abc.mp4"),
    ('"quoted" <b>|x:y*z?;w`\'.mp4', "_quoted_ _b__x_y_z__w__.mp4"),
    ("  .hidden.  ", "hidden"),
    ("no\u00a0break\u2028line\u202eevil.mp4", "nobreaklineevil.mp4"),  # odd spaces, separators, bidi overrides
    ("e\u0301te\u0301.mov", "\u00e9t\u00e9.mov"),  # NFC: one character per accented letter
    ("名前 video.mp4", "名前 video.mp4"),
    ("x" * 300 + ".mp4", "x" * MAX_FILENAME_CHARS),
    (None, "video"),
    ("", "video"),
    ("../..", "video"),
    ("/", "video"),
    ("\x00\x01", "video"),
])
def test_a_file_name_is_kept_only_as_a_safe_label(name: str | None, label: str) -> None:
    assert safe_filename(name) == label


class Trickle(io.BytesIO):
    """A request body that arrives in `reads` (its pieces, in turn), whatever the reader asks for."""

    def __init__(self, reads: list[bytes]) -> None:
        super().__init__()
        self._reads = list(reads)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = self._reads.pop(0) if self._reads else b""
        self.taken += len(piece)
        return piece


def in_reads(data: bytes, step: int, whole_tail: int = 0) -> Trickle:
    """`data` in reads of `step` bytes, its last `whole_tail` bytes in one (see the stray byte test below)."""
    cut = len(data) - whole_tail
    return Trickle([data[start:min(start + step, cut)] for start in range(0, cut, step)] + [data[cut:]])


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    content_type = "Content-Type: application/octet-stream\r\n" if filename is not None else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{content_type}\r\n".encode() + value + b"\r\n"


CLOSING = f"\r\n--{BOUNDARY}--\r\n".encode()


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + CLOSING[2:]


@pytest.mark.parametrize("step", [1, 7, 4096, 1024 * 1024])
def test_the_file_part_is_handed_on_whole_with_the_fields_around_it(step: int) -> None:
    body = form(part("bitrate", b"128"), part("video", OGG, filename="../my clip.ogg"), part("title", "Zoë".encode()))
    upload = open_upload(in_reads(body, step, whole_tail=len(CLOSING)), FORM, query_filename="ignored.mp4")
    assert (upload.container, upload.filename) == ("ogg", "my clip.ogg")
    assert b"".join(upload.chunks) == OGG
    assert upload.fields == {"bitrate": "128", "title": "Zoë"}  # the one after the file, once the file is read


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_field_named_file_is_a_field_not_the_video(where: str) -> None:
    field, video = part("file", b"a note"), part("video", OGG, filename="a.ogg")
    body = form(field, video) if where == "before" else form(video, field)
    upload = open_upload(io.BytesIO(body), FORM, None)
    assert b"".join(upload.chunks) == OGG and upload.fields == {"file": "a note"}


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_cover_option_is_a_field_and_the_cover_picture_a_file_part(where: str) -> None:
    option, picture = part("cover", b"attached"), part("cover", b"\xff\xd8 a JPEG", filename="frame.jpg")
    video = part("video", OGG, filename="a.ogg")
    body = form(option, picture, video) if where == "before" else form(video, picture, option)
    upload = open_upload(io.BytesIO(body), FORM, None)
    assert b"".join(upload.chunks) == OGG
    assert upload.fields == {"cover": "attached"} and upload.parts == {"cover": b"\xff\xd8 a JPEG"}


def test_a_field_of_the_longest_length_is_taken() -> None:
    body = form(part("video", OGG, filename="a.ogg"), part("title", b"t" * MAX_FIELD_BYTES))
    upload = open_upload(io.BytesIO(body), FORM, None)
    b"".join(upload.chunks)
    assert upload.fields == {"title": "t" * MAX_FIELD_BYTES}


def test_a_file_part_without_a_name_is_labelled_video() -> None:
    upload = open_upload(io.BytesIO(form(part("video", OGG, filename=""))), FORM, None)
    assert (upload.filename, upload.container) == ("video", "ogg")


def read_whole(body: bytes, content_type: str = FORM) -> None:
    upload = open_upload(in_reads(body, 100), content_type, None)
    b"".join(upload.chunks)


@pytest.mark.parametrize(("body", "content_type", "error"), [
    (form(part("video", OGG, "a.ogg"), part("other", OGG, "b.ogg")), FORM, "exactly one file"),
    (form(part("bitrate", b"128")), FORM, "no file part"),
    (form(), FORM, "no file part"),
    (form(*[part(f"field{n}", b"1") for n in range(MAX_PARTS + 1)], part("video", OGG, "a.ogg")), FORM,
     f"more than {MAX_PARTS} parts"),
    (form(part("title", b"t" * (MAX_FIELD_BYTES + 1)), part("video", OGG, "a.ogg")), FORM, "'title' is too long"),
    (form(part("video", OGG, "a.ogg"), part("title", b"t" * (MAX_FIELD_BYTES + 1))), FORM, "'title' is too long"),
    (form(part("video", OGG, "a.ogg")), "multipart/form-data", "without a boundary"),
    (form(part("video", OGG, "a.ogg"))[:-40], FORM, "malformed"),  # cut short in the file
    (form(part("video", OGG, "a.ogg"))[:60], FORM, "malformed"),  # in the part's headers
    (b"no boundary anywhere", FORM, "malformed"),
    (form(part("video", b"", "a.ogg")), FORM, "empty"),
    (b"", "video/mp4", "empty"),
])
def test_forms_that_are_not_one_upload_are_refused(body: bytes, content_type: str, error: str) -> None:
    with pytest.raises(BadUpload, match=error):
        read_whole(body, content_type)


@pytest.mark.parametrize("step", [3, 1024 * 1024])
def test_a_raw_body_is_the_file_named_by_the_query(step: int) -> None:
    upload = open_upload(in_reads(OGG, step), "application/octet-stream", query_filename="../dir/raw.ogg")
    assert (upload.filename, upload.container, upload.fields) == ("raw.ogg", "ogg", {})
    assert b"".join(upload.chunks) == OGG


def test_a_raw_body_without_a_name_is_labelled_video() -> None:
    assert open_upload(io.BytesIO(OGG), "video/ogg", None).filename == "video"


def test_what_is_no_container_we_read_is_told_before_the_rest_is_read() -> None:
    body = in_reads(b"%PDF-1.7\n" + bytes(2 * 1024 * 1024), 64 * 1024)
    upload = open_upload(body, "application/pdf", "paper.pdf")
    assert upload.container is None
    assert body.taken == 64 * 1024  # one read: the caller refuses it having read only the head


def test_a_transport_stream_is_recognised_across_many_small_reads() -> None:
    """MPEG-TS needs its sync byte at 0, 188 and 376: a head gathered over reads of 5 bytes still shows all three."""
    packet = b"\x47" + bytes(187)
    upload = open_upload(in_reads(packet * 4, 5), "video/mp2t", "a.ts")
    assert upload.container == "mpegts"
    assert b"".join(upload.chunks) == packet * 4


def test_peek_shows_the_head_and_still_yields_everything() -> None:
    chunks, head = peek(iter([b"ab", b"cde", b"fgh", b"ij"]), 4)
    assert head == b"abcd"
    assert b"".join(chunks) == b"abcdefghij"
    chunks, head = peek(iter([b"ab"]), 4)  # shorter than the head
    assert (head, b"".join(chunks)) == (b"ab", b"ab")


class EndsEarly(Trickle):
    """A body whose client went away after `reads`: its next read raises, as the server's check of a body short of
    its Content-Length does (runtime/server.py: IncompleteBody)."""

    def read(self, size: int | None = -1) -> bytes:
        if not self._reads:
            raise ConnectionAbortedError("the body ended early")
        return super().read(size)


@pytest.mark.parametrize("epilogue", [b"", b"\r\n", b"a line after the form\r\n"])
def test_a_form_is_read_to_the_end_of_its_body(epilogue: bytes) -> None:
    """Whole once its closing delimiter is in, the form is still read to the body's end (its epilogue, then the end
    the server checks) before the upload is acted on: a body cut short after the form is refused."""
    body = form(part("video", OGG, "a.ogg"), part("title", b"Zoe"))
    whole = Trickle([body, epilogue])
    upload = open_upload(whole, FORM, None)
    assert b"".join(upload.chunks) == OGG and whole.taken == len(body + epilogue)
    cut_short = EndsEarly([body + epilogue])
    upload = open_upload(cut_short, FORM, None)
    with pytest.raises(ConnectionAbortedError):
        b"".join(upload.chunks)


def test_a_long_epilogue_is_refused() -> None:
    """The decoder holds what follows the closing delimiter until the body ends: bounded, not read into memory."""
    body = form(part("video", OGG, "a.ogg")) + b"e" * (MAX_EPILOGUE_BYTES + 1)
    with pytest.raises(BadUpload, match="follow the form's closing delimiter"):
        read_whole(body)


@pytest.mark.xfail(strict=True, reason="werkzeug's MultipartDecoder (3.1.9) gives the last part a stray \\r when a "
                                       "read ends between the closing delimiter's dashes (pallets/werkzeug#3285)")
@pytest.mark.parametrize("last", ["file", "field"])
def test_a_read_ending_inside_the_closing_delimiter_adds_nothing_to_the_last_part(last: str) -> None:
    file, field = part("video", OGG, "a.ogg"), part("title", b"Zoe")
    body = form(field, file) if last == "file" else form(file, field)
    upload = open_upload(Trickle([body[:-3], body[-3:]]), FORM, None)
    assert (b"".join(upload.chunks), upload.fields) == (OGG, {"title": "Zoe"})
