"""MP3 segments encoded in parallel by ffmpeg/LAME in, one gapless MP3 stream and its single Info/LAME tag out
(plus the frame-aligned plan those segments are encoded by)."""

from __future__ import annotations

import mmap
import struct
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

SAMPLES_PER_FRAME = 1152
# ffmpeg's libmp3lame wrapper: the first encoded sample sits this far into frame 0.
ENCODER_DELAY = 576
SEGMENTABLE_SAMPLE_RATES = (32000, 44100, 48000)

# MPEG-1 Layer III, by bitrate index (0 is free format, 15 is forbidden).
_BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_SAMPLE_RATES = (44100, 48000, 32000, 0)
# main_data_begin is 9 bits in MPEG-1: a frame's main data starts at most this far before its own slot (LAME itself
# goes that far at 192k).
_MAX_MAIN_DATA_BEGIN = 511
_XING_FRAMES, _XING_BYTES, _XING_TOC, _XING_QUALITY = 1, 2, 4, 8
# ffmpeg names itself ("Lavc…") in the LAME tag; mutagen only honours the tag's delay and padding when it names
# LAME, and ffmpeg honours either. The audio is LAME's (libmp3lame; 3.100 is its last release since 2017).
_ENCODER_NAME = b"LAME3.100"

_header_at = struct.Struct(">I").unpack_from


class JoinError(ValueError):
    """A segment is not what the joiner expects; the caller should fall back to a single-pass encode."""


# --- The plan -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentPlan:
    """One segment: encode `ffmpeg [-ss start] [-t duration] -i IN …`, then keep `kept_frames` audio frames
    after dropping `skip_frames` (local audio frame l is global frame first_frame - skip_frames + l)."""

    index: int
    first_frame: int
    kept_frames: int | None
    skip_frames: int
    start_seconds: float | None
    duration_seconds: float | None

    def input_options(self) -> list[str]:
        """ffmpeg input options (before -i). ffmpeg reads times to the microsecond and rounds them to the nearest
        sample, which hits the exact sample at these rates."""
        options: list[str] = []
        if self.start_seconds is not None:
            options += ["-ss", f"{self.start_seconds:.6f}"]
        if self.duration_seconds is not None:
            options += ["-t", f"{self.duration_seconds:.6f}"]
        return options


def plan_segments(total_samples: int, sample_rate: int, segment_count: int, *, preroll_frames: int = 3,
                  postroll_frames: int = 2) -> list[SegmentPlan]:
    """Splits the global frame timeline of `total_samples` (an estimate is enough: the last segment runs to the
    end) into `segment_count` near-equal runs. Every segment but the first starts `preroll_frames` early, so the
    encoder has settled (and its bit reservoir filled) by the first frame kept; every segment but the last runs
    `postroll_frames` late, so the last frame kept was encoded with what follows it in view."""
    if sample_rate not in SEGMENTABLE_SAMPLE_RATES:
        raise ValueError(f"only MPEG-1 sample rates {SEGMENTABLE_SAMPLE_RATES} are segmented, not {sample_rate}")
    if segment_count < 1 or preroll_frames < 1 or postroll_frames < 0:
        raise ValueError("need segment_count >= 1, preroll_frames >= 1, postroll_frames >= 0")
    total_frames = -(-(total_samples + ENCODER_DELAY) // SAMPLES_PER_FRAME)
    firsts = [index * total_frames // segment_count for index in range(segment_count)] + [total_frames]
    shortest = min(after - before for before, after in pairwise(firsts))
    if shortest < preroll_frames + postroll_frames:
        raise ValueError(f"{total_samples} samples are too short for {segment_count} segments")

    def seconds(frames: int) -> float:
        return frames * SAMPLES_PER_FRAME / sample_rate

    plans = []
    for index in range(segment_count):
        first, following = firsts[index], firsts[index + 1]
        last = index == segment_count - 1
        skip = 0 if index == 0 else preroll_frames
        plans.append(SegmentPlan(
            index=index, first_frame=first, kept_frames=None if last else following - first, skip_frames=skip,
            # No -ss at all on the first segment: even `-ss 0` makes ffmpeg keep the AAC priming samples.
            start_seconds=None if index == 0 else seconds(first - skip),
            duration_seconds=None if last else seconds(following - first + skip + postroll_frames)))
    return plans


# --- Frames ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Layout:
    """What a frame header says about the frame's bytes (shared by every frame with the same 4 header bytes)."""

    header: int
    length: int
    side_start: int
    side_end: int
    sample_rate: int
    channels: int
    crc: bool
    main_data_begin_shift: int
    # Right shifts of the side info integer that bring each granule/channel part2_3_length to the low 12 bits
    # (mono has two; the other two shift everything out and read 0).
    part_shifts: tuple[int, int, int, int]


_LAYOUTS: dict[int, _Layout] = {}


def _layout(header: int) -> _Layout:
    known = _LAYOUTS.get(header)
    if known is not None:
        return known
    if header >> 21 != 0x7FF:
        raise JoinError(f"no MPEG frame sync in header {header:08x}")
    if (header >> 19) & 3 != 3 or (header >> 17) & 3 != 1:
        raise JoinError(f"not an MPEG-1 Layer III frame (header {header:08x})")
    kbps, rate = _BITRATES_KBPS[(header >> 12) & 15], _SAMPLE_RATES[(header >> 10) & 3]
    if not kbps or not rate:
        raise JoinError(f"free-format or invalid bitrate/sample rate (header {header:08x})")
    mono = (header >> 6) & 3 == 3
    crc = not (header >> 16) & 1
    side_start = 6 if crc else 4
    side_bits = 136 if mono else 256
    # Bit offsets of part2_3_length: after main_data_begin (9), private bits (5 mono / 3 stereo) and scfsi (4 per
    # channel); each granule/channel block is 59 bits.
    first_part = 18 if mono else 20
    blocks = 2 if mono else 4
    shifts = [side_bits - (first_part + 59 * block + 12) for block in range(blocks)] + [side_bits] * (4 - blocks)
    length = 144_000 * kbps // rate + ((header >> 9) & 1)
    layout = _Layout(
        header=header, length=length, side_start=side_start, side_end=side_start + side_bits // 8, sample_rate=rate,
        channels=1 if mono else 2, crc=crc, main_data_begin_shift=side_bits - 9,
        part_shifts=(shifts[0], shifts[1], shifts[2], shifts[3]))
    _LAYOUTS[header] = layout
    return layout


def _crc16(data: bytes, crc: int, polynomial: int, reflected: bool) -> int:
    for byte in data:
        if reflected:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        else:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ polynomial if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def _frame_head(header: int, layout: _Layout, side: int) -> bytes:
    """Header, CRC when the frame has one (over header bytes 2-3 and the side info), side info."""
    header_bytes = header.to_bytes(4, "big")
    side_bytes = side.to_bytes(layout.side_end - layout.side_start, "big")
    if not layout.crc:
        return header_bytes + side_bytes
    crc = _crc16(header_bytes[2:] + side_bytes, 0xFFFF, 0x8005, reflected=False)
    return header_bytes + crc.to_bytes(2, "big") + side_bytes


def _audio_start(segment: bytes) -> int:
    """Offset of the first MPEG frame: after an ID3v2 tag, if there is one."""
    if segment[:3] != b"ID3" or len(segment) < 10:
        return 0
    size = (segment[6] << 21) | (segment[7] << 14) | (segment[8] << 7) | segment[9]
    footer = 10 if segment[5] & 0x10 else 0
    return 10 + size + footer


@dataclass(frozen=True)
class _Tag:
    """The Info/LAME tag frame that starts every ffmpeg MP3 output."""

    frame: bytes
    header: int
    layout: _Layout
    audio_frames: int
    delay: int
    padding: int
    xing_offset: int
    lame_offset: int


def _read_tag(segment: bytes, start: int) -> _Tag:
    if len(segment) < start + 4:
        raise JoinError("segment holds no MPEG frame")
    header = _header_at(segment, start)[0]
    layout = _layout(header)
    frame = bytes(segment[start:start + layout.length])
    xing = layout.side_end
    if len(frame) < layout.length or frame[xing:xing + 4] not in (b"Info", b"Xing"):
        raise JoinError("segment does not start with an Info/Xing tag frame")
    flags = int.from_bytes(frame[xing + 4:xing + 8], "big")
    if flags & (_XING_FRAMES | _XING_BYTES | _XING_TOC) != _XING_FRAMES | _XING_BYTES | _XING_TOC:
        raise JoinError("the Info tag lacks its frame count, byte count or TOC")
    lame = xing + 8 + 4 + 4 + 100 + (4 if flags & _XING_QUALITY else 0)
    if lame + 36 > len(frame) or frame[lame:lame + 4] not in (b"LAME", b"Lavc", b"Lavf"):
        raise JoinError("the Info tag has no LAME extension (encoder delay and padding)")
    delay_padding = int.from_bytes(frame[lame + 21:lame + 24], "big")
    return _Tag(frame=frame, header=header, layout=layout,
                audio_frames=int.from_bytes(frame[xing + 8:xing + 12], "big"),
                delay=delay_padding >> 12, padding=delay_padding & 0xFFF, xing_offset=xing, lame_offset=lame)


# --- The joiner -----------------------------------------------------------------------------------------------

class Mp3Joiner:
    """Joins segments' audio frames into one stream, relaying every kept frame's main data (bit reservoir) so no
    frame refers to a dropped one, and builds the one Info/LAME tag frame for the whole result.

    Where a join leaves less reservoir than the segment's encoder had, a frame's main data may not fit before its
    own slot ends; that frame gets the next larger frame size (padding byte, else the next bitrate) that holds
    it. The stream stays valid and decodes to the same audio; `enlarged_frames` counts them.
    """

    def __init__(self) -> None:
        self._tag: _Tag | None = None
        self._last_padding = 0
        self._closed = False
        self.frame_count = 0
        self.enlarged_frames = 0
        # Byte offset of every output audio frame from the first one (for the TOC).
        self._frame_offsets: list[int] = []
        self._audio_bytes = 0
        # The output's main data, in payload coordinates (offsets into the output's frames with headers and side
        # info left out); _payload holds it from _payload_base on, up to _data_end.
        self._payload = bytearray()
        self._payload_base = 0
        self._data_end = 0
        self._slots_end = 0
        # Frames placed but not yet final: (header and side info, payload start, payload end).
        self._pending: deque[tuple[bytes, int, int]] = deque()

    @property
    def tag_frame_length(self) -> int:
        if self._tag is None:
            raise RuntimeError("tag_frame_length is known after the first add()")
        return len(self._tag.frame)

    @property
    def sample_count(self) -> int:
        if self._tag is None:
            return 0
        return self.frame_count * SAMPLES_PER_FRAME - self._tag.delay - self._last_padding

    def add(self, segment: bytes, *, skip_frames: int = 0, keep_frames: int | None = None) -> list[bytes]:
        """Takes the next segment (a whole ffmpeg MP3 output), drops its first `skip_frames` audio frames, keeps
        the next `keep_frames` (None: all the rest) and returns the joined bytes that are now final, in order."""
        if self._closed:
            raise RuntimeError("add() after close()")
        start = _audio_start(segment)
        tag = _read_tag(segment, start)
        if self._tag is None:
            self._tag = tag
        elif (tag.layout.sample_rate, tag.layout.channels) != (self._tag.layout.sample_rate,
                                                                 self._tag.layout.channels):
            raise JoinError("segments differ in sample rate or channel count")
        if tag.delay != self._tag.delay:
            raise JoinError(f"segments differ in encoder delay ({tag.delay} != {self._tag.delay})")
        wanted = None if keep_frames is None else skip_frames + keep_frames
        if wanted is not None and wanted > tag.audio_frames:
            raise JoinError(f"segment has {tag.audio_frames} audio frames, {wanted} are needed")
        if skip_frames < 0 or skip_frames >= tag.audio_frames:
            raise JoinError(f"segment has {tag.audio_frames} audio frames, cannot skip {skip_frames}")
        read = self._relay(segment, start + len(tag.frame), tag, skip_frames,
                           tag.audio_frames if wanted is None else wanted)
        if read != (tag.audio_frames if wanted is None else wanted):
            raise JoinError(f"segment holds {read} audio frames, its tag says {tag.audio_frames}")
        # A segment cut short ends on a whole frame: no padding; the last one carries the encoder's padding.
        self._last_padding = tag.padding if keep_frames is None else 0
        return self._take_final(final_before=max(self._data_end, self._slots_end - _MAX_MAIN_DATA_BEGIN))

    def close(self) -> bytes:
        """The frames still held back (no later main data can land in them now)."""
        self._closed = True
        pieces = self._take_final(final_before=None)
        return pieces[0] if pieces else b""

    def _relay(self, segment: bytes, position: int, tag: _Tag, skip: int, wanted: int) -> int:
        """Places the main data of frames [skip, wanted) of one segment; returns how many frames it read."""
        rate, channels = tag.layout.sample_rate, tag.layout.channels
        source = memoryview(segment)
        end = len(segment)
        # This segment's own main data stream: its frames' payloads back to back, so main_data_begin can be
        # followed back across frame headers with one slice.
        in_payload = bytearray()
        payload, pending, offsets = self._payload, self._pending, self._frame_offsets
        data_end, slots_end, audio_bytes = self._data_end, self._slots_end, self._audio_bytes
        layouts = _LAYOUTS
        index = 0
        # The loop is the joiner's whole cost (~23,000 frames per 600 s): locals only, no per-bit work.
        while index < wanted and position + 4 <= end:
            header = _header_at(segment, position)[0]
            layout = layouts.get(header) or _layout(header)
            if layout.sample_rate != rate or layout.channels != channels:
                raise JoinError("sample rate or channel count changes inside a segment")
            frame_end = position + layout.length
            if frame_end > end:
                raise JoinError("segment ends inside a frame")
            side_end = position + layout.side_end
            side = int.from_bytes(source[position + layout.side_start:side_end], "big")
            main_data_begin = side >> layout.main_data_begin_shift
            in_slot = len(in_payload)
            in_payload += source[side_end:frame_end]
            if index >= skip:
                a, b, c, d = layout.part_shifts
                size = ((side >> a & 0xFFF) + (side >> b & 0xFFF) + (side >> c & 0xFFF) + (side >> d & 0xFFF)
                        + 7) >> 3
                main_start = in_slot - main_data_begin
                if main_start < 0 or main_start + size > len(in_payload):
                    raise JoinError("a frame's main data lies outside the segment's frames before it")
                slot_start = slots_end
                place = max(data_end, slot_start - _MAX_MAIN_DATA_BEGIN)
                slot_end = slot_start + layout.length - layout.side_end
                enlarged = place + size > slot_end
                if enlarged:
                    header, layout, slot_end = self._enlarge(header, layout, place, slot_start, size)
                if place > data_end:
                    payload += bytes(place - data_end)
                payload += in_payload[main_start:main_start + size]
                data_end = place + size
                new_begin = slot_start - place
                if new_begin == main_data_begin and not enlarged:
                    head = bytes(source[position:side_end])
                else:
                    shift = layout.main_data_begin_shift
                    side = (side & ((1 << shift) - 1)) | (new_begin << shift)
                    head = _frame_head(header, layout, side)
                pending.append((head, slot_start, slot_end))
                offsets.append(audio_bytes)
                audio_bytes += layout.length
                slots_end = slot_end
            position = frame_end
            index += 1
        self._data_end, self._slots_end, self._audio_bytes = data_end, slots_end, audio_bytes
        self.frame_count = len(offsets)
        return index

    def _enlarge(self, header: int, layout: _Layout, place: int, slot_start: int,
                 size: int) -> tuple[int, _Layout, int]:
        """The smallest larger frame (padding byte, higher bitrates) whose slot holds `size` bytes of main data
        starting at `place`. 320 kbit/s always does for LAME's frames: their main data fit 511 bytes of reservoir
        and a 192k (or smaller) slot."""
        bitrate_index = (header >> 12) & 15
        candidates = sorted(
            (_layout((header & ~0xF200) | (index << 12) | (pad << 9)) for index in range(bitrate_index, 15)
             for pad in (0, 1)), key=lambda larger: larger.length)
        for candidate in candidates:
            slot_end = slot_start + candidate.length - candidate.side_end
            if candidate.length > layout.length and place + size <= slot_end:
                self.enlarged_frames += 1
                return candidate.header, candidate, slot_end
        raise JoinError(f"a frame's {size} bytes of main data fit in no frame size")

    def _take_final(self, final_before: int | None) -> list[bytes]:
        """Frames whose payload ends at or before `final_before` (all when None): header, side info, payload."""
        pending, payload, base = self._pending, self._payload, self._payload_base
        pieces: list[bytes | bytearray] = []
        while pending and (final_before is None or pending[0][2] <= final_before):
            head, slot_start, slot_end = pending.popleft()
            pieces.append(head)
            chunk = payload[slot_start - base:slot_end - base]
            pieces.append(chunk)
            if len(chunk) < slot_end - slot_start:
                pieces.append(bytes(slot_end - slot_start - len(chunk)))
        # Keep only what frames still pending may take from.
        keep_from = min(pending[0][1] if pending else self._slots_end, self._data_end)
        if keep_from > base:
            del payload[:keep_from - base]
            self._payload_base = keep_from
        return [b"".join(pieces)] if pieces else []

    def tag_frame(self, *, delay: int | None = None, sample_count: int | None = None) -> bytes:
        """The Info/LAME tag frame describing the whole joined stream, to write just before its first audio frame
        (after close()). `delay` and `sample_count` (the segments' own unless given) set the encoder delay and the
        padding a gapless decoder removes: a piece cut from a longer stream plays exactly its own samples."""
        if self._tag is None or not self._closed:
            raise RuntimeError("tag_frame() needs at least one add() and then close()")
        tag = self._tag
        delay = tag.delay if delay is None else delay
        sample_count = self.sample_count if sample_count is None else sample_count
        frame = bytearray(tag.frame)
        xing, lame = tag.xing_offset, tag.lame_offset
        total_bytes = len(frame) + self._audio_bytes
        frames = self.frame_count
        frame[xing + 8:xing + 12] = frames.to_bytes(4, "big")
        frame[xing + 12:xing + 16] = total_bytes.to_bytes(4, "big")
        # TOC: entry i is the position of the frame i % into the audio, in 1/256ths of the file.
        offsets = self._frame_offsets
        toc = bytearray(100)
        for entry in range(1, 100):
            position = len(frame) + offsets[entry * frames // 100] if frames else 0
            toc[entry] = min(255, position * 256 // total_bytes)
        frame[xing + 16:xing + 116] = toc
        padding = frames * SAMPLES_PER_FRAME - sample_count - delay
        if not 0 <= padding < 4096 or not 0 <= delay < 4096:
            raise JoinError(f"delay {delay} or padding {padding} does not fit the LAME tag")
        frame[lame:lame + 9] = _ENCODER_NAME
        frame[lame + 21:lame + 24] = ((delay << 12) | padding).to_bytes(3, "big")
        frame[lame + 28:lame + 32] = total_bytes.to_bytes(4, "big")
        # The music CRC is optional (no decoder checks it) and a pure-Python CRC of all the audio costs ~0.6 s per
        # 600 s; 0 leaves it unset.
        frame[lame + 32:lame + 34] = b"\0\0"
        frame[lame + 34:lame + 36] = _crc16(bytes(frame[:lame + 34]), 0, 0xA001, reflected=True).to_bytes(2, "big")
        return bytes(frame)


# --- Cutting one stream into pieces (one MP3 per chapter) -----------------------------------------------------

# ffmpeg's MP3 decoder outputs a sample this many samples after the frame data that makes it (its synthesis
# filterbank), and skips that many more than the LAME tag's delay.
DECODER_DELAY = 529
# A piece starts this many frames before its first sample's frame: a decoder's first granule lacks the previous
# one's overlap and its filterbank starts empty (576 + 529 samples), so a piece's first frame only warms it up and
# the tag's delay skips its output.
WARM_UP_FRAMES = 1
# Frames taken in front of a piece so its first frames' main data (up to 511 bytes back: the bit reservoir) is
# there to be relayed: 511 bytes are at most 6 frames of the smallest MPEG-1 frame this joiner writes (32 kbit/s).
RESERVOIR_FRAMES = 6


@dataclass(frozen=True)
class PieceCut:
    """One piece of a stream: audio frames [first_frame, first_frame + frame_count) with the LAME tag's `delay`,
    decoding to `sample_count` samples: the stream's samples from `start_sample` on."""

    first_frame: int
    frame_count: int
    delay: int
    start_sample: int
    sample_count: int


def plan_cuts(starts: list[int], total_samples: int, total_frames: int, *,
              delay: int = ENCODER_DELAY) -> list[PieceCut]:
    """Pieces of a stream of `total_samples` samples in `total_frames` audio frames (its encoder `delay`) that
    start at the samples `starts` (increasing; the first piece also takes what comes before its start, the last
    runs to the end), so the pieces played back to back by a gapless decoder are the stream, sample for sample.
    Each piece's frames start on the frame before its first sample's (WARM_UP_FRAMES) and end on the frame that
    makes its last sample; its tag's delay and padding trim the rest."""
    if not starts or any(after <= before for before, after in pairwise(starts)) or starts[0] < 0 \
            or starts[-1] >= total_samples:
        raise JoinError(f"piece starts must increase within the stream's {total_samples} samples: {starts}")
    bounds = [0, *starts[1:], total_samples]
    cuts = []
    for index, (start, end) in enumerate(pairwise(bounds)):
        first = max(0, (start + delay) // SAMPLES_PER_FRAME - WARM_UP_FRAMES)
        piece_delay = start + delay - first * SAMPLES_PER_FRAME
        if index == len(bounds) - 2:
            count = total_frames - first
        else:
            count = min(total_frames - first,
                        -(-(piece_delay + end - start + DECODER_DELAY) // SAMPLES_PER_FRAME))
        cuts.append(PieceCut(first_frame=first, frame_count=count, delay=piece_delay, start_sample=start,
                             sample_count=end - start))
    return cuts


@dataclass(frozen=True)
class StreamLayout:
    """Where a whole MP3's Info/LAME tag and audio frames are: its tag, and every audio frame's byte offset (one
    more at the end)."""

    tag: _Tag
    frame_offsets: list[int]

    @property
    def frame_count(self) -> int:
        return len(self.frame_offsets) - 1

    @property
    def sample_count(self) -> int:
        return self.frame_count * SAMPLES_PER_FRAME - self.tag.delay - self.tag.padding


def stream_layout(mp3: bytes | mmap.mmap) -> StreamLayout:
    """Reads an MP3 as ffmpeg (or this joiner) wrote it: an optional ID3v2 tag, the Info/LAME tag frame, CBR or VBR
    MPEG-1 Layer III frames (an ID3v1 tag or anything else after them is left out)."""
    start = _audio_start(bytes(mp3[:10]))
    tag = _read_tag(bytes(mp3[start:start + 4096]), 0)
    position, end = start + len(tag.frame), len(mp3)
    offsets = []
    while position + 4 <= end and mp3[position] == 0xFF:
        layout = _layout(_header_at(mp3, position)[0])
        if position + layout.length > end:
            break
        offsets.append(position)
        position += layout.length
    offsets.append(position)
    if len(offsets) - 1 != tag.audio_frames:
        raise JoinError(f"the MP3 holds {len(offsets) - 1} audio frames, its tag says {tag.audio_frames}")
    return StreamLayout(tag, offsets)


def cut_piece(mp3: bytes | mmap.mmap, layout: StreamLayout, cut: PieceCut) -> bytes:
    """One piece of the MP3 (without an ID3 tag): its own Info/LAME tag frame, then its frames, their main data
    relayed so none refers to a frame left out."""
    lead = min(cut.first_frame, RESERVOIR_FRAMES)
    offsets = layout.frame_offsets
    # The joiner takes a segment as ffmpeg writes one: the tag frame, then frames (here from `lead` frames early).
    segment = layout.tag.frame + bytes(mp3[offsets[cut.first_frame - lead]:offsets[cut.first_frame + cut.frame_count]])
    joiner = Mp3Joiner()
    pieces = joiner.add(segment, skip_frames=lead, keep_frames=cut.frame_count)
    pieces.append(joiner.close())
    return joiner.tag_frame(delay=cut.delay, sample_count=cut.sample_count) + b"".join(pieces)
