"""Cutting one MP3 into pieces (mp3join.plan_cuts, cut_piece: one MP3 per chapter) against real ffmpeg/LAME: each
piece decodes to exactly its samples, and the pieces decoded one after another (each with its own delay and padding
removed, as a gapless player does) are the whole, sample for sample, with no click at the cuts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mutagen.mp3 import MP3

from tests.audio_quality import click_ratio, decode, make_source
from transcoding.mp3join import (
    DECODER_DELAY,
    ENCODER_DELAY,
    SAMPLES_PER_FRAME,
    JoinError,
    PieceCut,
    cut_piece,
    plan_cuts,
    stream_layout,
)

TONE_HZ = 1000


def encode(source: Path, target: Path, *quality: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-vn", "-c:a", "libmp3lame",
                    *(quality or ("-b:a", "192k")), str(target)], check=True)
    return target


@pytest.mark.parametrize(("rate", "channels", "tone", "quality"), [
    (44100, 2, True, ("-b:a", "192k")), (48000, 1, False, ("-b:a", "64k")), (44100, 2, False, ("-q:a", "2")),
], ids=["tone-44100-cbr", "music-48000-mono-64k", "music-44100-vbr"])
def test_pieces_decode_to_their_spans_and_back_to_back_to_the_whole(
        tmp_path: Path, rate: int, channels: int, tone: bool, quality: tuple[str, ...]) -> None:
    source = make_source(tmp_path / "source.mp4", rate=rate, channels=channels, tone=tone, seconds=12)
    whole_path = encode(source, tmp_path / "whole.mp3", *quality)
    whole = whole_path.read_bytes()
    layout = stream_layout(whole)
    # A start on a frame boundary, one just after, and one anywhere.
    starts = [0, 3 * SAMPLES_PER_FRAME * 40 - ENCODER_DELAY, round(7.001 * rate), round(9.5 * rate) + 1]
    cuts = plan_cuts(starts, layout.sample_count, layout.frame_count)
    pieces = []
    for number, cut in enumerate(cuts):
        path = tmp_path / f"piece{number}.mp3"
        path.write_bytes(cut_piece(whole, layout, cut))
        decoded = decode(path)
        assert len(decoded) == cut.sample_count  # ffmpeg, honouring the piece's own LAME tag
        assert abs(MP3(path).info.length - cut.sample_count / rate) < SAMPLES_PER_FRAME / rate  # mutagen too
        pieces.append(decoded)
    whole_pcm = decode(whole_path)
    joined = np.concatenate(pieces)
    assert len(joined) == len(whole_pcm) == layout.sample_count
    # The same frames, the decoder warmed up before each piece's first sample: the very same samples.
    assert float(np.abs(joined - whole_pcm).max()) < 1e-6
    if tone:
        assert click_ratio(joined, rate, TONE_HZ, starts[1:], rate // 10) <= 1.25


def test_a_cut_starts_a_frame_early_and_ends_where_the_decoder_has_made_its_last_sample() -> None:
    cuts = plan_cuts([0, 10_000, 50_000], total_samples=100_000, total_frames=88)
    assert cuts[0] == PieceCut(first_frame=0, frame_count=-(-(576 + 10_000 + DECODER_DELAY) // 1152), delay=576,
                               start_sample=0, sample_count=10_000)
    # Sample 10000 sits in frame (10000 + 576) // 1152 = 9; the piece starts on frame 8 to warm the decoder up.
    assert (cuts[1].first_frame, cuts[1].delay, cuts[1].sample_count) == (8, 10_576 - 8 * 1152, 40_000)
    assert cuts[2].first_frame + cuts[2].frame_count == 88  # the last piece runs to the end
    for cut in cuts:
        assert SAMPLES_PER_FRAME <= cut.delay < 2 * SAMPLES_PER_FRAME or cut.first_frame == 0
        padding = cut.frame_count * SAMPLES_PER_FRAME - cut.delay - cut.sample_count
        assert 0 <= padding < 4096


@pytest.mark.parametrize("starts", [[], [0, 0], [0, 500, 400], [-1], [0, 100_000]])
def test_cuts_refuse_starts_that_do_not_increase_within_the_stream(starts: list[int]) -> None:
    with pytest.raises(JoinError):
        plan_cuts(starts, total_samples=100_000, total_frames=88)
