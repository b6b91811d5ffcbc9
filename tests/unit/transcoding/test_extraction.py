"""The upload's extraction on real media made by ffmpeg: every audio track copied with its metadata, the chapters and
the container's tags kept, the covers made (the frame at 10 %, the attached picture as it was); the source's container
by the one rule (an MP4's AAC keeps its priming: the same decoded sample count), an MP3 kept an MP3; a client's cover
and chapters; and the conversion's refusals, with the same reasons."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from events import FailureReason
from transcoding import ffmpeg_tools
from transcoding.extraction import (
    MAX_CHAPTERS,
    Chapter,
    InvalidPart,
    check_cover,
    extract,
    ffmetadata,
    parse_chapters,
    source_format,
)
from transcoding.ffmpeg_tools import AudioTrack, Probe, Rejected

MAX_STREAMS = 32
MAX_DURATION = 3 * 3600.0
CHAPTERS = ";FFMETADATA1\ntitle=Two Tracks\nartist=The Artist\n\n" + "".join(
    f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={start + 2000}\ntitle=Part {number}\n\n"
    for number, start in enumerate((0, 2000, 4000), start=1))


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *arguments], check=True)


def ffprobe(path: Path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of",
                             "json", str(path)], check=True, capture_output=True)
    return json.loads(result.stdout)


def decoded_samples(path: Path, track: int = 0) -> int:
    """Samples per channel ffmpeg decodes from the audio track (its priming or padding trimmed as the file says)."""
    channels = next(stream["channels"] for stream in ffprobe(path)["streams"] if stream["codec_type"] == "audio")
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:a:{track}", "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    return len(pcm) // (2 * channels)


def jpeg_size(path: Path) -> tuple[int, int]:
    stream = ffprobe(path)["streams"][0]
    return stream["width"], stream["height"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=1", "-frames:v", "1", str(folder / "picture.jpg"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1200x800:rate=1", "-frames:v", "1", str(folder / "big.png"))
    (folder / "chapters.txt").write_text(CHAPTERS)
    return folder


@pytest.fixture(scope="module")
def two_tracks(media: Path) -> Path:
    """Matroska: H.264 (1280x720, so the frame is scaled), AAC "eng" and Opus "fra" with titles, 3 titled chapters,
    title and artist tags, a JPEG attachment (the attached picture)."""
    target = media / "two-tracks.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=10:duration=6",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
           "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=6",
           "-i", str(media / "chapters.txt"), "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_metadata", "3",
           "-map_chapters", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a:0", "aac", "-c:a:1", "libopus",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
           "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français",
           "-attach", str(media / "picture.jpg"), "-metadata:s:t", "mimetype=image/jpeg",
           "-metadata:s:t", "filename=cover.jpg", str(target))
    return target


def test_a_two_track_matroska_keeps_every_track_its_tags_chapters_and_pictures(
        two_tracks: Path, media: Path, tmp_path: Path) -> None:
    extracted = extract(two_tracks, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION)
    assert (extracted.source_format, extracted.container, extracted.source.name) == \
           ("matroska", "matroska,webm", "source.mka")
    info = ffprobe(extracted.source)
    assert [stream["codec_type"] for stream in info["streams"]] == ["audio", "audio"], "audio only: no video"
    assert [(stream["codec_name"], stream["tags"]["language"], stream["tags"]["title"],
             stream["disposition"]["default"]) for stream in info["streams"]] == \
           [("aac", "eng", "English", 1), ("opus", "fra", "Français", 0)]
    assert {key.lower(): value for key, value in info["format"]["tags"].items()}.items() >= \
           {"title": "Two Tracks", "artist": "The Artist"}.items()
    assert [(round(float(chapter["start_time"]), 3), chapter["tags"]["title"]) for chapter in info["chapters"]] == \
           [(0.0, "Part 1"), (2.0, "Part 2"), (4.0, "Part 3")]
    # Each track decodes to as many samples as the upload's: copied, not re-encoded.
    for track in (0, 1):
        assert decoded_samples(extracted.source, track) == decoded_samples(two_tracks, track)
    # The probe convert will make of it: both tracks to choose from.
    assert [track.language for track in extracted.probe.audio_tracks] == ["eng", "fra"]
    assert extracted.probe.chapter_count == 3
    # The frame at 10 %, scaled to 600 px on its longer side; the attached picture byte for byte.
    frame, attached = extracted.covers["frame"], extracted.covers["attached"]
    assert frame.content_type == "image/jpeg" and jpeg_size(frame.path) == (600, 338)
    assert attached.content_type == "image/jpeg"
    assert attached.path.read_bytes() == (media / "picture.jpg").read_bytes()
    assert extracted.notes == ()
    assert extracted.source.stat().st_size < two_tracks.stat().st_size / 2


def test_an_mp4s_aac_goes_into_an_m4a_that_keeps_its_priming(tmp_path: Path) -> None:
    upload = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=5",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=5", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", "-metadata", "title=An MP4", str(upload))
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION)
    assert (extracted.source_format, extracted.source.suffix) == ("mp4", ".m4a")
    # AAC's 1024 samples of encoder priming stay skipped (MP4's edit list): what a decoder gives is the same.
    assert decoded_samples(extracted.source) == decoded_samples(upload)
    # The control: the same copy into Matroska decodes the priming too (why the rule picks MP4 here).
    ffmpeg("-i", str(upload), "-map", "0:a", "-c", "copy", str(tmp_path / "control.mka"))
    assert decoded_samples(tmp_path / "control.mka") == decoded_samples(upload) + 1024
    assert ffprobe(extracted.source)["format"]["tags"]["title"] == "An MP4"
    assert set(extracted.covers) == {"frame"} and jpeg_size(extracted.covers["frame"].path) == (320, 240)


def test_a_webm_becomes_matroska_with_its_frame(tmp_path: Path) -> None:
    upload = tmp_path / "clip.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=4",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4", "-c:v", "libvpx-vp9",
           "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", str(upload))
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION)
    assert extracted.source_format == "matroska"
    assert decoded_samples(extracted.source) == decoded_samples(upload)
    assert set(extracted.covers) == {"frame"}


def test_an_mp3_stays_an_mp3_with_its_length_and_its_attached_picture(media: Path, tmp_path: Path) -> None:
    """Matroska would lose an MP3's encoder delay and padding (its Xing/LAME header): copied into an .mka and back
    into an MP3, 6 s came out 2991 samples short. An MP3 source is an MP3."""
    upload = tmp_path / "tone.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=6", "-i", str(media / "picture.jpg"),
           "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame", "-b:a", "64k", "-c:v", "copy",
           "-disposition:v", "attached_pic", "-id3v2_version", "3", "-metadata", "title=A tone", str(upload))
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION)
    assert (extracted.source_format, extracted.source.suffix) == ("mp3", ".mp3")
    assert decoded_samples(extracted.source) == decoded_samples(upload) == 6 * 44100
    # The conversion's copy path (an MP3 source is copied) keeps the length too.
    copied = tmp_path / "copied.mp3"
    ffmpeg_tools.run(ffmpeg_tools.conversion_command(extracted.source, copied, copy=True, bitrate_kbps=192,
                                                     max_duration=MAX_DURATION),
                     expected_duration=6.0, timeout=30, heartbeat=lambda _: True)
    assert decoded_samples(copied) == 6 * 44100
    assert [stream["codec_type"] for stream in ffprobe(extracted.source)["streams"]] == ["audio"]
    assert extracted.probe.tags["title"] == "A tone"
    assert set(extracted.covers) == {"attached"}, "a still picture gives no frame"
    assert extracted.covers["attached"].path.read_bytes() == (media / "picture.jpg").read_bytes()


def test_a_clients_cover_stands_for_the_frame_of_an_upload_without_a_picture(media: Path, tmp_path: Path) -> None:
    """An extract the client made has no video: its cover (here a 1200x800 PNG) is decoded and scaled like any
    picture, into the frame JPEG."""
    upload = tmp_path / "extract.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3", "-c:a", "aac", str(upload))
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION,
                        client_cover=check_cover((media / "big.png").read_bytes()))
    assert set(extracted.covers) == {"frame"}
    assert extracted.covers["frame"].path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert jpeg_size(extracted.covers["frame"].path) == (600, 400)


def test_a_clients_cover_that_is_no_picture_costs_the_cover_only(tmp_path: Path) -> None:
    upload = tmp_path / "extract.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3", "-c:a", "aac", str(upload))
    broken = b"\xff\xd8\xff\xe0" + bytes(2000)  # a JPEG's first bytes, then nothing a decoder can use
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION, client_cover=broken)
    assert extracted.covers == {}
    assert extracted.notes == ("no cover: its picture could not be made into a JPEG",)
    assert decoded_samples(extracted.source) == decoded_samples(upload)


def test_a_clients_chapters_go_into_a_source_without_chapters(tmp_path: Path) -> None:
    upload = tmp_path / "extract.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=6", "-c:a", "aac", str(upload))
    hostile = "a=b;c#d\\e\nf\x07g"
    chapters = parse_chapters(json.dumps([{"start": 3, "title": hostile}, {"start": 0, "end": 3, "title": "Intro"}])
                              .encode())
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION, chapters=chapters)
    found = ffprobe(extracted.source)["chapters"]
    assert [(round(float(chapter["start_time"]), 2), round(float(chapter["end_time"]), 2), chapter["tags"]["title"])
            for chapter in found] == [(0.0, 3.0, "Intro"), (3.0, 6.0, "a=b;c#d\\e f g")]


def test_a_clients_chapters_never_replace_the_uploads_own(two_tracks: Path, tmp_path: Path) -> None:
    extracted = extract(two_tracks, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION,
                        chapters=[Chapter(0.0, 1.0, "Not these")])
    assert [chapter["tags"]["title"] for chapter in ffprobe(extracted.source)["chapters"]] == \
           ["Part 1", "Part 2", "Part 3"]


@pytest.mark.parametrize(("body", "problem"), [
    (b"not json", "not JSON"),
    (b'{"start": 0}', "a list"),
    (b'[{"start": -1}]', "seconds"),
    (b'[{"start": "0"}]', "seconds"),
    (b'[{"start": true}]', "seconds"),
    (b'[{"start": 5, "end": 5}]', "ends before it starts"),
    (b'[{"start": 0, "title": 7}]', "text"),
    (b'[{"start": 1}, {"start": 1}]', "two chapters start"),
    (json.dumps([{"start": n} for n in range(MAX_CHAPTERS + 1)]).encode(), "more than"),
    (b" " * (64 * 1024 + 1), "larger than"),
])
def test_bad_chapters_are_refused_saying_why(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidPart, match=problem):
        parse_chapters(body)


def test_chapter_titles_are_cleaned_and_escaped_for_ffmetadata() -> None:
    chapters = parse_chapters(b'[{"start": 0, "end": 1, "title": "x\\u202e=\\n;#\\\\"}]')
    assert chapters == [Chapter(0.0, 1.0, "x = ;#\\")]  # control and format characters become spaces
    assert ffmetadata(chapters, 1.0).splitlines()[-1] == "title=x \\= \\;\\#\\\\"


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "empty"), (b"GIF89a" + bytes(100), "JPEG or PNG"), (b"\xff\xd8\xff" + bytes(512 * 1024), "larger"),
])
def test_a_clients_cover_must_look_like_a_picture(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPart, match=problem):
        check_cover(data)


def probe_of(container: str, *codecs: str) -> Probe:
    return Probe(container=container, audio_codec=codecs[0], audio_duration=1.0, stream_count=len(codecs),
                 audio_tracks=tuple(AudioTrack(index, codec, 2, None, None, index == 0)
                                    for index, codec in enumerate(codecs)))


@pytest.mark.parametrize(("container", "codecs", "form"), [
    ("mov,mp4,m4a,3gp,3g2,mj2", ("aac",), "mp4"),
    ("mov,mp4,m4a,3gp,3g2,mj2", ("aac", "ac3", "eac3", "opus", "flac", "alac", "mp3"), "mp4"),
    ("mov,mp4,m4a,3gp,3g2,mj2", ("aac", "pcm_s16le"), "matroska"),  # PCM: MP4 cannot take it
    ("matroska,webm", ("aac",), "matroska"),
    ("mp3", ("mp3",), "mp3"),
    ("ogg", ("opus",), "matroska"),
    ("wav", ("pcm_s16le",), "matroska"),
])
def test_the_sources_container_follows_the_one_rule(container: str, codecs: tuple[str, ...], form: str) -> None:
    assert source_format(probe_of(container, *codecs)) == form


# --- Refusals: the conversion's, with its reasons ----------------------------------------------------------------

def make(path: Path, *arguments: str) -> Path:
    ffmpeg(*arguments, str(path))
    return path


def silent_film(path: Path) -> Path:
    return make(path, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=2", "-c:v", "libx264",
                "-preset", "ultrafast")


def forty_streams(path: Path) -> Path:
    tone = make(path.with_suffix(".wav"), "-f", "lavfi", "-i", "sine=duration=1:sample_rate=8000", "-c:a", "pcm_u8")
    return make(path, "-i", str(tone), *[part for _ in range(40) for part in ("-map", "0:a")], "-c", "copy")


def half_an_mp4(path: Path) -> Path:
    whole = make(path.with_name("whole.mp4"), "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=3",
                 "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                 "-movflags", "+faststart")
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def hls_playlist(path: Path) -> Path:
    target = make(path.with_name("other.mp3"), "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "libmp3lame")
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n")
    return path


def long_tone(path: Path) -> Path:
    return make(path, "-f", "lavfi", "-i", "sine=duration=5", "-c:a", "aac")


@pytest.mark.parametrize(("name", "made", "reason"), [
    ("random.mp4", lambda path: path.write_bytes(bytes(range(256)) * 64) and path, FailureReason.NOT_MEDIA),
    ("silent.mp4", silent_film, FailureReason.NO_AUDIO),
    ("streams.mka", forty_streams, FailureReason.TOO_MANY_STREAMS),
    ("long.m4a", long_tone, FailureReason.TOO_LONG),  # max_duration 4 s below
    ("cut.mp4", half_an_mp4, FailureReason.INVALID_OUTPUT),
    ("playlist.mp4", hls_playlist, FailureReason.NOT_MEDIA),
])
def test_the_extraction_refuses_what_the_conversion_refuses(name: str, made, reason: FailureReason,
                                                            tmp_path: Path) -> None:
    upload = made(tmp_path / name)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(Rejected) as refused:
        extract(upload, work, max_streams=MAX_STREAMS, max_duration=4.0)
    assert refused.value.reason == reason, refused.value.message
    assert str(tmp_path) not in refused.value.message, "no server path in the words for the owner"
    if reason is not FailureReason.INVALID_OUTPUT:  # the probe refuses it: the conversion's probe would too
        with pytest.raises(Rejected) as probed:
            ffmpeg_tools.probe(upload, max_streams=MAX_STREAMS, max_duration=4.0)
        assert probed.value.reason == reason


def test_a_frame_too_large_to_decode_costs_the_cover_not_the_audio(tmp_path: Path) -> None:
    """Motion JPEG frames that claim 65500 x 65500 pixels beside a valid audio track: ffmpeg fails on the frame
    within its memory limit, and the audio is taken alone."""
    upload = make(tmp_path / "mjpeg.mkv", "-f", "lavfi", "-i", "color=c=black:size=64x64:rate=1:duration=3",
                  "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "mjpeg", "-c:a", "aac", "-shortest")
    data = bytearray(upload.read_bytes())
    position = data.find(b"\xff\xc0")
    while position != -1:
        data[position + 5:position + 9] = struct.pack(">HH", 65500, 65500)
        position = data.find(b"\xff\xc0", position + 2)
    upload.write_bytes(bytes(data))
    extracted = extract(upload, tmp_path, max_streams=MAX_STREAMS, max_duration=MAX_DURATION)
    assert extracted.covers == {}
    assert extracted.notes == ("no cover: its picture could not be made into a JPEG",)
    assert decoded_samples(extracted.source) == decoded_samples(upload)
