"""Telling a container by its first bytes: real files written by ffmpeg in every container we accept, each named
as the demuxer ffmpeg itself picks, and images, playlists, lists and documents refused."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from transcoding.media_formats import DEMUXERS, FORMAT_WHITELIST, SNIFF_BYTES, sniff_container

# Both sources, made once and written to every file by one ffmpeg run.
SOURCES = ["-f", "lavfi", "-i", "testsrc=size=32x32:rate=25:duration=0.2",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=0.2"]
BOTH, SOUND, PICTURE = ["-map", "0:v", "-map", "1:a"], ["-map", "1:a"], ["-map", "0:v"]

# file name: (streams and codecs, muxer, the container expected)
MEDIA = {
    "clip.mp4": ([*BOTH, "-c:v", "libx264", "-c:a", "aac"], "mp4", "mov"),
    "clip.mov": ([*BOTH, "-c:v", "mpeg4", "-c:a", "aac"], "mov", "mov"),
    "song.m4a": ([*SOUND, "-c:a", "aac"], "ipod", "mov"),
    "clip.mkv": ([*BOTH, "-c:v", "libx264", "-c:a", "aac"], "matroska", "matroska"),
    "clip.webm": ([*BOTH, "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libvorbis"], "webm", "matroska"),
    "clip.avi": ([*BOTH, "-c:v", "mpeg4", "-c:a", "libmp3lame"], "avi", "avi"),
    "clip.flv": ([*BOTH, "-c:v", "flv", "-c:a", "aac"], "flv", "flv"),
    "clip.ts": ([*BOTH, "-c:v", "mpeg2video", "-c:a", "mp2"], "mpegts", "mpegts"),
    "clip.mpg": ([*BOTH, "-c:v", "mpeg1video", "-c:a", "mp2"], "mpeg", "mpeg"),
    "clip.wmv": ([*BOTH, "-c:v", "msmpeg4", "-c:a", "wmav2"], "asf", "asf"),
    "song.ogg": ([*SOUND, "-c:a", "libvorbis"], "ogg", "ogg"),
    "song.opus": ([*SOUND, "-c:a", "libopus", "-ar", "48000"], "ogg", "ogg"),
    "song.wav": ([*SOUND, "-c:a", "pcm_s16le"], "wav", "wav"),
    "tagged.mp3": ([*SOUND, "-c:a", "libmp3lame"], "mp3", "mp3"),  # an ID3v2 tag first
    "bare.mp3": ([*SOUND, "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0"], "mp3", "mp3"),
    "layer2.mp2": ([*SOUND, "-c:a", "mp2"], "mp2", "mp3"),  # ffmpeg's mp3 demuxer reads layer II too
    "song.flac": ([*SOUND, "-c:a", "flac"], "flac", "flac"),
    "song.aac": ([*SOUND, "-c:a", "aac"], "adts", "aac"),
}
NOT_MEDIA = {
    "frame.png": ([*PICTURE, "-frames:v", "1", "-update", "1"], "image2"),
    "frame.jpg": ([*PICTURE, "-frames:v", "1", "-update", "1"], "image2"),
    "frame.bmp": ([*PICTURE, "-frames:v", "1", "-update", "1"], "image2"),
    "frame.gif": ([*PICTURE, "-frames:v", "1"], "gif"),
    "playlist.m3u8": ([*PICTURE, "-c:v", "libx264", "-hls_segment_filename", "%d.ts"], "hls"),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    outputs = [(options, muxer, name) for name, (options, muxer, _) in MEDIA.items()]
    outputs += [(options, muxer, name) for name, (options, muxer) in NOT_MEDIA.items()]
    arguments = [argument for options, muxer, name in outputs for argument in (*options, "-f", muxer, name)]
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *SOURCES, *arguments], check=True, cwd=folder,
                   timeout=60)
    return folder


@pytest.fixture(scope="module")
def probed(made: Path) -> dict[str, list[str]]:
    """The demuxer names ffmpeg gives each media file as it opens it (picked by probing the content, not the
    name): one run opening them all, which stops, having no output, once it has named them."""
    inputs = [argument for name in MEDIA for argument in ("-i", name)]
    opened = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", *inputs], cwd=made, capture_output=True, text=True,
                            timeout=60).stderr
    named = {name: formats.split(",")
             for formats, name in re.findall(r"^Input #\d+, (.+), from '(.+)':$", opened, re.MULTILINE)}
    assert set(named) == set(MEDIA), opened
    return named


def head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(SNIFF_BYTES)


@pytest.mark.parametrize(("name", "container"), [(name, container) for name, (_, _, container) in MEDIA.items()])
def test_a_real_file_is_told_by_its_first_bytes(made: Path, name: str, container: str) -> None:
    assert sniff_container(head(made / name)) == container


@pytest.mark.parametrize("name", list(MEDIA))
def test_the_container_told_is_the_demuxer_ffmpeg_picks_for_the_file(made: Path, probed: dict[str, list[str]],
                                                                      name: str) -> None:
    """So `-format_whitelist` lets the file through at conversion, with the demuxer that reads it."""
    container = sniff_container(head(made / name))
    assert container in DEMUXERS and container in FORMAT_WHITELIST.split(",")
    assert container in probed[name]


@pytest.mark.parametrize("name", list(NOT_MEDIA))
def test_images_and_playlists_made_by_ffmpeg_are_refused(made: Path, name: str) -> None:
    data = head(made / name)
    assert len(data) > 12 and sniff_container(data) is None


@pytest.mark.parametrize("data", [
    b"",
    b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n",
    b"ffconcat version 1.0\nfile '/etc/passwd'\n",
    b"file 'clip.mp4'\n",
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=stream\r\n",  # an SDP description
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
    b"<!DOCTYPE html><html><body>not a video</body></html>",
    b"\x7fELF\x02\x01\x01\x00" + bytes(56),
    bytes(SNIFF_BYTES),
    b"\x00\x00\x00\x18ftypmp4",  # an MP4's signature, cut short of 12 bytes
    b"RIFF\x24\x00\x00\x00WEBPVP8 ",  # RIFF, but an image
    b"\x47" + bytes(187) + b"\x47" + bytes(187),  # two transport stream packets are not enough to tell
])
def test_what_is_no_container_we_accept_is_refused(data: bytes) -> None:
    assert sniff_container(data) is None


def test_a_head_of_the_sniffs_length_is_enough_for_every_container(made: Path) -> None:
    for name in MEDIA:
        data = (made / name).read_bytes()
        assert sniff_container(data[:SNIFF_BYTES]) == sniff_container(data), name
