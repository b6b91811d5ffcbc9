"""Takes a video file and makes what vid2mp3 needs of it: an audio-only `.m4a` or `.mka` holding every audio track
copied (never decoded) with the container's tags, chapters and attached picture, and a JPEG of the frame at 10 %.
On a real video that is 1-3 % of its bytes, so the command uploads that instead of the video (README: The vid2mp3
command). PyAV does the work in this process with the FFmpeg libraries its wheel ships; where it cannot, the
command sends the whole file, and NotExtracted says why."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # av itself is imported when a video is read: the commands that read none skip its 0.1-0.2 s
    import av.container
    import av.stream
    import av.video.frame
    import av.video.stream

# The containers vid2mp3's server opens (transcoding/media_formats.py, DEMUXERS; this package imports nothing of the
# server). PyAV opens nothing else, so a playlist or a concat list can never make it read other files or URLs.
DEMUXERS = ("mov", "matroska", "avi", "flv", "mpegts", "mpeg", "ogg", "wav", "mp3", "aac", "flac", "asf")
OPEN_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}

# The rule the server and the web page share: an MP4/MOV whose audio codecs MP4 carries as they are stays MP4 (an
# .m4a). Its edit list keeps AAC's encoder priming; Matroska loses it (the audio would start 21.3 ms late and the MP3
# come out 24 ms longer). Anything else goes into Matroska, which carries every codec.
MP4_FAMILY = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}
MP4_AUDIO_CODECS = {"aac", "alac", "mp3", "ac3", "eac3", "opus", "flac"}
SUFFIXES = {"mp4": ".m4a", "matroska": ".mka"}
CONTENT_TYPES = {"mp4": "audio/mp4", "matroska": "audio/x-matroska"}
# Tags the muxer writes itself, or that would describe the source rather than the extract.
OWN_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "handler_name", "vendor_id", "duration"}

PICTURE_TYPES = {"mjpeg": "image/jpeg", "png": "image/png"}

# The cover frame, as the server would take it from the video (transcoding/tagging.py): at 10 % of the duration,
# at most 600 px on its longer side, upright.
FRAME_AT = 0.10
FRAME_MAX_SIDE = 600
FRAME_QUALITY = 3  # mjpeg's qscale, as the server's -q:v 3
# The frame is decoded from the key frame before it; a very long group of pictures stops here, a little early.
FRAME_MAX_DECODED = 300
# Until this close to the frame, the decoder skips the frames no other refers to (B-frames, mostly): they are only
# passed on the way, and skipping them saves about a third of the decoding. Close to it, every frame is decoded, so
# the frame taken is the one at 10 % even when it is such a frame.
FRAME_SKIP_UNTIL_SECONDS = 0.5


class NotExtracted(Exception):
    """The file is sent whole; the message says why."""


@dataclass(frozen=True)
class Extract:
    audio: Path  # the .m4a or .mka
    format: str  # "mp4" or "matroska", as the server names it
    frame: Path | None  # the JPEG; None when the video has no moving picture, or it could not be decoded
    frame_problem: str | None  # why there is no frame although there is a moving picture
    tracks: int
    source_bytes: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def extract(video: Path, folder: Path) -> Extract:
    """Writes `folder`/audio.m4a or .mka, and `folder`/frame.jpg when the video has a moving picture. Raises
    NotExtracted when the whole file should be sent instead (leaving what it began in `folder`). Memory stays flat
    however big the video: packets are copied one at a time, and the demuxer skips every stream but the audio."""
    import av

    try:
        with av.open(str(video), options=OPEN_OPTIONS) as source:
            if not source.streams.audio:
                raise NotExtracted("it has no audio track")
            if all(is_picture(stream) for stream in source.streams.video):
                raise NotExtracted("it holds only audio already")
            muxer = output_format(source)
            # A second reading for the pictures and the frame: it seeks, and the copy must start at the beginning.
            with av.open(str(video), options=OPEN_OPTIONS) as reader:
                pictures = attached_pictures(reader)
                frame, frame_problem = cover_frame(reader, folder / "frame.jpg")
            target = folder / f"audio{SUFFIXES[muxer]}"
            copy_audio(source, target, muxer, pictures)
            tracks = len(source.streams.audio)
    except NotExtracted:
        raise
    except av.FFmpegError as error:
        raise NotExtracted(f"PyAV cannot read or copy it: {error.strerror or type(error).__name__}") from None
    except Exception as error:  # whatever stops the extract, the whole file still converts
        raise NotExtracted(f"PyAV cannot read or copy it: {error}") from None
    return Extract(audio=target, format=muxer, frame=frame, frame_problem=frame_problem, tracks=tracks,
                   source_bytes=video.stat().st_size)


def is_picture(stream: av.stream.Stream) -> bool:
    """An attached picture (cover art) shows as a video stream of one packet."""
    from av.stream import Disposition

    return stream.type == "video" and bool(stream.disposition & Disposition.attached_pic)


def codec_name(stream: av.stream.Stream) -> str:
    context = stream.codec_context
    return context.codec.canonical_name if context is not None else "unknown"


def output_format(source: av.container.InputContainer) -> str:
    if set(source.format.name.split(",")) & MP4_FAMILY and \
            all(codec_name(stream) in MP4_AUDIO_CODECS for stream in source.streams.audio):
        return "mp4"
    return "matroska"


@dataclass(frozen=True)
class Picture:
    index: int  # its stream's
    data: bytes
    mimetype: str
    name: str


def attached_pictures(reader: av.container.InputContainer) -> list[Picture]:
    """The attached pictures (JPEG or PNG) and their bytes. libavformat hands each one as the first packet of its
    stream once the file is open, so they are read without reading on into the file."""
    wanted = {stream.index: stream for stream in reader.streams.video
              if is_picture(stream) and codec_name(stream) in PICTURE_TYPES}
    found: list[Picture] = []
    if not wanted:
        return found
    for packet in reader.demux():
        stream = wanted.get(packet.stream.index)
        if stream is None:
            break  # past the queued pictures
        if packet.size:
            mimetype = PICTURE_TYPES[codec_name(stream)]
            name = stream.metadata.get("filename") or f"cover{len(found) or ''}.{mimetype.split('/')[1]}"
            found.append(Picture(stream.index, bytes(packet), mimetype, name))
        if len(found) == len(wanted):
            break
    return found


def copy_audio(source: av.container.InputContainer, target: Path, muxer: str, pictures: list[Picture]) -> None:
    import av

    for stream in source.streams:
        if stream.type != "audio":
            stream.discard = av.stream.Discard.all  # the demuxer skips their packets (and in MP4 their bytes)
    # bitexact: no random Matroska segment id or version string, so the same video makes the same bytes (a resumed
    # upload of an extract continues the same file).
    with av.open(str(target), "w", format=muxer, options={"fflags": "+bitexact"}) as output:
        for key, value in source.metadata.items():
            if key.lower() not in OWN_TAGS:
                output.metadata[key] = value
        copies = {}
        for stream in source.streams.audio:
            copy = output.add_stream_from_template(stream)  # the codec parameters; not the tags nor disposition
            for key, value in stream.metadata.items():
                if key.lower() not in OWN_TAGS:
                    copy.metadata[key] = value
            copy.disposition = stream.disposition
            copies[stream.index] = copy
        picture_streams = []
        for picture in pictures:
            if muxer == "matroska":
                output.add_attachment(name=picture.name, mimetype=picture.mimetype, data=picture.data)
            else:  # MP4 keeps a cover as a stream of one picture
                cover = output.add_stream_from_template(source.streams[picture.index])
                cover.disposition = av.stream.Disposition.attached_pic
                picture_streams.append((cover, picture.data))
        chapters = source.chapters()
        if chapters:
            output.set_chapters(chapters)
        for cover, data in picture_streams:
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = cover, 0, 0
            output.mux(packet)
        for packet in source.demux(list(source.streams.audio)):
            if packet.dts is None:  # the demuxer's empty packet at the end of a stream
                continue
            packet.stream = copies[packet.stream.index]
            output.mux(packet)


def cover_frame(reader: av.container.InputContainer, target: Path) -> tuple[Path | None, str | None]:
    """Writes the frame at 10 % of the video as a JPEG; answers its path, or None and why not."""
    import av

    stream = next(stream for stream in reader.streams.video if not is_picture(stream))
    try:
        frame = frame_at(reader, stream, FRAME_AT)
        if frame is None:
            return None, "no frame could be decoded"
        upright(fitted(frame, stream)).save(str(target), qscale=FRAME_QUALITY)
    except av.FFmpegError as error:
        return None, f"its frame could not be decoded ({error.strerror or type(error).__name__})"
    except Exception as error:  # a video codec the wheel lacks, say: the audio goes without the frame
        return None, f"its frame could not be decoded ({error})"
    return target, None


def frame_at(reader: av.container.InputContainer, stream: av.video.stream.VideoStream,
             fraction: float) -> av.video.frame.VideoFrame | None:
    """The first frame at or after `fraction` of the duration (the container's, counted from its start, as ffmpeg's
    `-ss` counts): seek to the key frame before it and decode on."""
    import av

    for other in reader.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all
    start = (reader.start_time or 0) / av.time_base
    if reader.duration:
        duration = reader.duration / av.time_base
    elif stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = 0.0
    target = start + duration * fraction
    if duration > 0 and stream.time_base:
        reader.seek(int(target / stream.time_base), stream=stream)
    context = stream.codec_context
    context.skip_frame = "NONREF"
    frame = None
    for decoded, frame in enumerate(reader.decode(stream), start=1):
        if frame.time is None or frame.time >= target or decoded >= FRAME_MAX_DECODED:
            break
        if frame.time >= target - FRAME_SKIP_UNTIL_SECONDS:
            context.skip_frame = "DEFAULT"
    return frame


def fitted(frame: av.video.frame.VideoFrame, stream: av.video.stream.VideoStream) -> av.video.frame.VideoFrame:
    """At most FRAME_MAX_SIDE px on its longer side, in its display proportions (non-square pixels made square),
    in the JPEG encoder's pixel format."""
    aspect = stream.sample_aspect_ratio or (stream.codec_context.sample_aspect_ratio if stream.codec_context else None)
    width, height = frame.width, frame.height
    if aspect and aspect > 0 and aspect != 1:
        width = round(width * Fraction(aspect))
    scale = min(1.0, FRAME_MAX_SIDE / max(width, height))
    return frame.reformat(width=max(2, round(width * scale) // 2 * 2), height=max(2, round(height * scale) // 2 * 2),
                          format="yuvj420p", interpolation="BICUBIC")


def upright(frame: av.video.frame.VideoFrame) -> av.video.frame.VideoFrame:
    """The frame turned as its display matrix says (a phone's portrait video), as ffmpeg turns it by default."""
    import av.filter

    filters: dict[int, list[tuple[str, str | None]]] = {
        90: [("transpose", "cclock")], 180: [("hflip", None), ("vflip", None)], 270: [("transpose", "clock")]}
    turns = filters.get(round(frame.rotation or 0) % 360)
    if not turns:
        return frame
    graph = av.filter.Graph()
    node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                            time_base=frame.time_base or Fraction(1, 25))
    for name, arguments in turns:
        following = graph.add(name, arguments)
        node.link_to(following)
        node = following
    node.link_to(graph.add("buffersink"))
    graph.configure()
    graph.push(frame)
    return cast("av.video.frame.VideoFrame", graph.pull())
