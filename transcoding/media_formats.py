"""The media containers vid2mp3 accepts: recognised by their first bytes at upload, and the only demuxers ffmpeg
and ffprobe may open at conversion. Playlists and lists (HLS, ffconcat), images and raw data are none of them,
so an input can never make ffmpeg read another file or a URL."""

from __future__ import annotations

# ffmpeg demuxer names passed as `-format_whitelist`; a demuxer matches if any of its names is listed.
DEMUXERS = ("mov", "matroska", "avi", "flv", "mpegts", "mpeg", "ogg", "wav", "mp3", "aac", "flac", "asf")
FORMAT_WHITELIST = ",".join(DEMUXERS)
# The same containers by the names people know them by (their files' extensions), for the refusal of any other file.
KNOWN_AS = ("MP4", "MOV", "M4A", "MKV", "WebM", "AVI", "FLV", "MPEG-TS", "MPEG", "Ogg", "WAV", "MP3", "AAC", "FLAC",
            "WMV/WMA")
NOT_MEDIA_MESSAGE = f"the file is not a video or audio file vid2mp3 reads: choose a {', '.join(KNOWN_AS[:-1])} " \
                    f"or {KNOWN_AS[-1]} file"
# Inputs are always a local file the converter wrote itself.
PROTOCOL_WHITELIST = "file"

# Bytes needed to recognise every container below.
SNIFF_BYTES = 512


def sniff_container(head: bytes) -> str | None:
    """The container the first bytes of a file announce (a DEMUXERS name), or None when it is none we accept."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)):
        return "mp3"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"
    return None
