"""The command's extraction on real media made with the ffmpeg binary (and PyAV where ffmpeg 5.1 cannot): every
audio track copied into .m4a or .mka by the container rule, with tags, chapters and the attached picture; the cover
frame as a JPEG; the whole file where PyAV cannot copy it; flat memory on a big file. Every result is read back by
ffprobe and ffmpeg, not by PyAV."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from made_media import ffmpeg, picture, tone
from vid2mp3_client.extract import NotExtracted, extract


def probe(path: Path) -> dict[str, Any]:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of",
                             "json", str(path)], capture_output=True, check=True)
    return dict(json.loads(result.stdout))


def tags(probed: dict[str, Any]) -> dict[str, str]:
    """The container's tags but the muxer's own (Matroska spells them in capitals)."""
    return {key.lower(): value for key, value in probed["format"].get("tags", {}).items()
            if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands")}


def samples(path: Path, track: int) -> int:
    """How many samples (per channel) ffmpeg decodes from the audio track: priming skipped, padding cut."""
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:a:{track}", "-ac", "1",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return len(pcm) // 2


@pytest.fixture(scope="module")
def mp4_with_aac(media: Path) -> Path:
    """MP4: 720p H.264 and AAC (1024 samples of encoder priming, in the edit list), chapters, tags, a cover."""
    target = media / "talk.mp4"
    ffmpeg(*picture("1280x720"), *tone(440, rate=44100), "-i", str(media / "cover.jpg"),
           "-i", str(media / "chapters.txt"), "-map", "0:v", "-map", "1:a", "-map", "2:v", "-map_metadata", "3",
           "-map_chapters", "3", "-c:v:0", "libx264", "-preset", "ultrafast", "-c:v:1", "mjpeg",
           "-disposition:v:1", "attached_pic", "-c:a", "aac", str(target))
    return target


def test_a_two_track_matroska_keeps_every_track_its_tags_chapters_and_picture(two_tracks: Path,
                                                                              tmp_path: Path) -> None:
    made = extract(two_tracks, tmp_path)
    assert made.audio == tmp_path / "audio.mka" and made.format == "matroska"
    assert made.content_type == "audio/x-matroska" and made.tracks == 2
    assert made.source_bytes == two_tracks.stat().st_size
    source, copy = probe(two_tracks), probe(made.audio)
    audio = [stream for stream in copy["streams"] if stream["codec_type"] == "audio"]
    assert [(stream["codec_name"], stream["tags"]["language"], stream["tags"]["title"],
             stream["disposition"]["default"]) for stream in audio] == \
        [("aac", "eng", "English", 1), ("opus", "fra", "Français", 0)]
    assert tags(copy) == {"title": "Two tracks", "artist": "The Testers"}
    assert [(chapter["tags"]["title"], float(chapter["start_time"]), float(chapter["end_time"]))
            for chapter in copy["chapters"]] == [("Opening", 0.0, 1.5), ("Closing", 1.5, 3.0)]
    pictures = [stream for stream in copy["streams"] if stream["disposition"].get("attached_pic")]
    assert [(stream["codec_name"], stream["tags"]["mimetype"]) for stream in pictures] == [("mjpeg", "image/jpeg")]
    assert not [stream for stream in copy["streams"] if stream["codec_type"] == "video"
                and not stream["disposition"].get("attached_pic")]
    for track in (0, 1):
        assert samples(made.audio, track) == samples(two_tracks, track)
    assert made.audio.stat().st_size < two_tracks.stat().st_size
    assert source["format"]["format_name"] == copy["format"]["format_name"] == "matroska,webm"


def test_an_mp4_stays_mp4_and_keeps_the_aac_priming(mp4_with_aac: Path, tmp_path: Path) -> None:
    made = extract(mp4_with_aac, tmp_path)
    assert made.audio == tmp_path / "audio.m4a" and made.format == "mp4" and made.content_type == "audio/mp4"
    copy = probe(made.audio)
    audio = [stream for stream in copy["streams"] if stream["codec_type"] == "audio"]
    assert [stream["codec_name"] for stream in audio] == ["aac"]
    # Matroska would lose the edit list: 1024 samples more, 21.3 ms late.
    assert samples(made.audio, 0) == samples(mp4_with_aac, 0)
    assert float(audio[0]["start_time"]) == 0.0
    assert tags(copy) == {"title": "Two tracks", "artist": "The Testers"}
    assert [chapter["tags"]["title"] for chapter in copy["chapters"]] == ["Opening", "Closing"]
    pictures = [stream for stream in copy["streams"] if stream["disposition"].get("attached_pic")]
    assert [stream["codec_name"] for stream in pictures] == ["mjpeg"]


def test_the_frame_at_ten_percent_is_a_jpeg_of_at_most_600_px(mp4_with_aac: Path, tmp_path: Path) -> None:
    made = extract(mp4_with_aac, tmp_path)
    assert made.frame == tmp_path / "frame.jpg" and made.frame_problem is None
    assert made.frame.read_bytes()[:2] == b"\xff\xd8"
    stream = probe(made.frame)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 600, 338)
    # The frame ffmpeg itself takes at 0.3 s of the 3 s (testsrc2 draws the time, so another frame differs).
    assert psnr(made.frame, frame_by_ffmpeg(mp4_with_aac, 0.3, "600:338", tmp_path)) > 30


def test_the_frame_is_the_one_at_ten_percent_far_from_a_key_frame(media: Path, tmp_path: Path) -> None:
    """30 s with a key frame every 10 s and B-frames: the frame at 3 s is decoded from the one at 0, skipping the
    frames nothing refers to until close to it, and is ffmpeg's frame at 3 s, not a neighbour."""
    source = media / "long group.mp4"
    ffmpeg(*picture("320x240", 30), *tone(440, 30), "-c:v", "libx264", "-preset", "ultrafast", "-x264-params",
           "keyint=250:bframes=3:b-pyramid=none", "-c:a", "aac", str(source))
    made = extract(source, tmp_path)
    assert made.frame is not None
    reference = frame_by_ffmpeg(source, 3.0, "320:240", tmp_path)
    assert psnr(made.frame, reference) > 30
    neighbour = frame_by_ffmpeg(source, 3.04, "320:240", tmp_path)
    assert psnr(made.frame, reference) > psnr(made.frame, neighbour) + 3


def frame_by_ffmpeg(video: Path, seconds: float, size: str, folder: Path) -> Path:
    target = folder / f"reference-{seconds}.jpg"
    ffmpeg("-ss", str(seconds), "-i", str(video), "-frames:v", "1", "-vf", f"scale={size}", "-q:v", "3", str(target))
    return target


def psnr(first: Path, second: Path) -> float:
    report = subprocess.run(["ffmpeg", "-nostdin", "-i", str(first), "-i", str(second), "-lavfi", "psnr", "-f", "null",
                             "-"], capture_output=True, text=True, check=True).stderr
    return float(report.rsplit("average:", 1)[1].split()[0])


@pytest.mark.parametrize(("name", "arguments", "expected"), [
    ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
     ("matroska", [("opus", 48000)])),
    ("mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libmp3lame"], ("mp4", [("mp3", 48000)])),
    ("mov", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le"], ("matroska", [("pcm_s16le", 48000)])),
    ("avi", ["-c:v", "mpeg4", "-c:a", "ac3"], ("matroska", [("ac3", 48000)])),
])
def test_the_container_rule(media: Path, tmp_path: Path, name: str, arguments: list[str],
                            expected: tuple[str, list[tuple[str, int]]]) -> None:
    """MP4/MOV with audio MP4 carries stays MP4; WebM, PCM in MOV, AVI and the rest go into Matroska. Each track
    decodes to as many samples as the source's."""
    source = media / f"clip-{'-'.join(arguments[-1:])}.{name}"
    ffmpeg(*picture(), *tone(440), "-metadata", f"title=A {name}", *arguments, str(source))
    made = extract(source, tmp_path)
    audio = [stream for stream in probe(made.audio)["streams"] if stream["codec_type"] == "audio"]
    assert (made.format, [(stream["codec_name"], int(stream["sample_rate"])) for stream in audio]) == expected
    assert probe(made.audio)["format"]["tags"]["title"] == f"A {name}"
    assert samples(made.audio, 0) == samples(source, 0)
    assert made.frame is not None


@pytest.mark.parametrize(("size", "shape", "expected"), [
    ("720x576", {"sar": "16/15"}, (600, 450)),  # non-square pixels: 768 x 576 as shown
    ("640x360", {"rotation": 90}, (338, 600)),  # a phone held upright
    ("160x120", {}, (160, 120)),  # never enlarged
])
def test_the_frame_is_as_shown(media: Path, tmp_path: Path, size: str, shape: dict[str, Any],
                               expected: tuple[int, int]) -> None:
    source = media / f"shape-{size}-{'-'.join(str(value).replace('/', ':') for value in shape.values())}.mp4"
    setsar = ["-vf", f"setsar={shape['sar']}"] if "sar" in shape else []
    ffmpeg(*picture(size), *tone(440), *setsar, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           str(source))
    if "rotation" in shape:
        rotate(source, shape["rotation"])
    made = extract(source, tmp_path)
    assert made.frame is not None
    stream = probe(made.frame)["streams"][0]
    assert (stream["width"], stream["height"]) == expected


def rotate(video: Path, degrees: int) -> None:
    """Sets the video's display matrix, as a phone does (ffmpeg 5.1's command line cannot)."""
    import av

    turned = video.with_name(f"turned-{video.name}")
    with av.open(str(video)) as source, av.open(str(turned), "w") as output:
        copies = {stream.index: output.add_stream_from_template(stream) for stream in source.streams}
        copies[source.streams.video[0].index].set_display_rotation(degrees)
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                output.mux(packet)
    turned.replace(video)


@pytest.mark.parametrize(("name", "arguments", "reason"), [
    ("notes.mp4", None, "PyAV cannot read or copy it"),
    ("song.m4a", [*tone(440), "-c:a", "aac"], "it holds only audio already"),
    ("song.mp3", [*tone(440), "-i", "{media}/cover.jpg", "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v",
                  "copy", "-disposition:v", "attached_pic"], "it holds only audio already"),
    ("silent.mp4", [*picture(), "-c:v", "libx264", "-preset", "ultrafast"], "it has no audio track"),
])
def test_the_whole_file_is_sent_where_an_extract_cannot_be_made_or_would_not_help(
        media: Path, tmp_path: Path, name: str, arguments: list[str] | None, reason: str) -> None:
    source = tmp_path / "in" / name
    source.parent.mkdir()
    if arguments is None:
        source.write_text("not a video, whatever its name says\n" * 100)
    else:
        ffmpeg(*[argument.format(media=media) for argument in arguments], str(source))
    with pytest.raises(NotExtracted, match=reason):
        extract(source, tmp_path)


def test_a_list_naming_other_files_is_not_followed(mp4_with_aac: Path, tmp_path: Path) -> None:
    """PyAV opens only the containers the server opens: an ffconcat list (which FFmpeg itself would follow to the
    video beside it) is sent as it is, and the server refuses it."""
    (tmp_path / "beside.mp4").write_bytes(mp4_with_aac.read_bytes())
    listing = tmp_path / "list.mp4"
    listing.write_text("ffconcat version 1.0\nfile beside.mp4\n")
    with pytest.raises(NotExtracted, match="PyAV cannot read or copy it"):
        extract(listing, tmp_path)


MEASURE = """
import resource, sys
from pathlib import Path
from vid2mp3_client.extract import extract
extract(Path(sys.argv[1]), Path(sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_kib(video: Path, folder: Path) -> int:
    folder.mkdir()
    result = subprocess.run([sys.executable, "-c", MEASURE, str(video), str(folder)], capture_output=True, text=True,
                            check=True)
    return int(result.stdout)


def test_memory_stays_flat_as_the_video_grows(media: Path, tmp_path: Path) -> None:
    """A 12 times bigger video (about 170 MB at 110 Mbit/s): the same peak memory, within a few MB."""
    small = media / "dense.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=1,noise=alls=30:allf=t", *tone(440, 1),
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "24", "-c:a", "aac", str(small))
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{small}'\n" * 12)
    big = tmp_path / "big.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(big))
    assert big.stat().st_size > 10 * small.stat().st_size > 100 * 10**6
    alone, grown = peak_kib(small, tmp_path / "small"), peak_kib(big, tmp_path / "big")
    print(f"peak memory: {alone} KiB for {small.stat().st_size} B, {grown} KiB for {big.stat().st_size} B")
    assert grown - alone < 16 * 1024 and Fraction(grown, alone) < Fraction(5, 4)


def test_a_frame_that_cannot_be_decoded_leaves_the_audio_to_go_alone(two_tracks: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def undecodable(*_: Any) -> None:
        raise ValueError("no decoder for this video codec")

    monkeypatch.setattr("vid2mp3_client.extract.frame_at", undecodable)
    made = extract(two_tracks, tmp_path)
    assert made.frame is None and made.tracks == 2 and made.audio.exists()
    assert made.frame_problem == "its frame could not be decoded (no decoder for this video codec)"
