"""Conversion options: read from form fields, every bad one named at once, and checked together."""

from __future__ import annotations

from typing import Any

import pytest

from events.options import InvalidOptions, as_fields, parse_options


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {}),
    ({"start": "12.5", "end": "1:02:03.25"}, {"start_seconds": 12.5, "end_seconds": 3723.25}),
    ({"start": "01:05", "end": "00:01:10.5"}, {"start_seconds": 65.0, "end_seconds": 70.5}),
    ({"start": "10800.125"}, {"start_seconds": 10800.125}),  # to the millisecond, also sent back by a client
    ({"quality": "v0"}, {"quality": "V0"}),
    ({"quality": "320k"}, {"quality": "320"}),
    ({"bitrate": "128"}, {"quality": "128"}),  # the older spelling still works
    ({"bitrate": "128", "quality": "V4"}, {"quality": "V4"}),  # and the newer wins
    ({"normalize": "EBU-R128", "loudness": "-23"}, {"normalize": "ebu-r128", "loudness_lufs": -23.0}),
    ({"track": "1", "channels": "1", "cover": "none"}, {"track": 1, "channels": 1, "cover": "none"}),
    ({"chapters": "None"}, {"chapters": "none"}),
    ({"trim_silence": "TRUE", "silence_threshold_db": "-60", "silence_min_seconds": "1.5"},
     {"trim_silence": True, "silence_threshold_db": -60.0, "silence_min_seconds": 1.5}),
    ({"trim_silence": "false"}, {}),  # the default, said
    ({"feed": "False"}, {"feed": False}),  # out of the podcast feed
    ({"feed": "true"}, {}),  # in it: the default, said
    ({"split": "Chapters", "chapters": "markers"}, {"split": "chapters", "chapters": "markers"}),
    ({"title": "  Ode\tto\njoy ", "artist": "Ana Ñ", "album": "", "date": "2024-05"},
     {"title": "Ode to joy", "artist": "Ana Ñ", "date": "2024-05"}),
    ({"title": "\u200b\x07"}, {}),  # nothing but invisible characters: no tag
])
def test_options_are_parsed_from_form_fields(fields: dict[str, str], expected: dict[str, Any]) -> None:
    options = parse_options(fields)
    assert options.given() == expected
    assert parse_options(as_fields(options)) == options  # what a client sends says the same again


def test_every_bad_option_is_named_at_once() -> None:
    with pytest.raises(InvalidOptions) as raised:
        parse_options({"start": "1:75", "end": "soon", "quality": "V10", "bitrate": "100", "normalize": "loud",
                       "loudness": "-5", "track": "-1", "channels": "6", "title": "x" * 256, "date": "2024-13-01",
                       "cover": "poster", "chapters": "split", "trim_silence": "yes", "silence_threshold_db": "0",
                       "silence_min_seconds": "0", "split": "scenes", "feed": "no"})
    assert set(raised.value.errors) == {"start", "end", "quality", "bitrate", "normalize", "loudness", "track",
                                        "channels", "title", "date", "cover", "chapters", "split", "trim_silence",
                                        "silence_threshold_db", "silence_min_seconds", "feed"}
    assert all(raised.value.errors.values())


@pytest.mark.parametrize(("fields", "field", "problem"), [
    ({"start": "20", "end": "10"}, "end", "after start"),
    ({"start": "10", "end": "10"}, "end", "after start"),
    ({"loudness": "-18"}, "loudness", "normalize"),
    ({"silence_threshold_db": "-40"}, "silence_threshold_db", "trim_silence=true"),
    ({"trim_silence": "false", "silence_min_seconds": "2"}, "silence_min_seconds", "trim_silence=true"),
    ({"trim_silence": "true", "start": "0"}, "trim_silence", "not both"),
    ({"trim_silence": "true", "end": "10"}, "trim_silence", "not both"),
    ({"split": "chapters", "chapters": "none"}, "split", "which chapters=none drops"),
])
def test_options_are_checked_together(fields: dict[str, str], field: str, problem: str) -> None:
    with pytest.raises(InvalidOptions) as raised:
        parse_options(fields)
    assert problem in raised.value.errors[field]




@pytest.mark.parametrize(("fields", "field", "problem"), [
    ({"qualty": "V0"}, "qualty", "did you mean 'quality'?"),
    ({"Start": "1"}, "Start", "did you mean 'start'?"),  # names are spelt as given: no case folding
    ({"tempo": "2"}, "tempo", "the options are start, end, quality"),
    ({"filename": "a.mp4"}, "filename", "not an option"),  # the upload takes it from the query before the options
])
def test_a_name_that_is_no_option_is_refused(fields: dict[str, str], field: str, problem: str) -> None:
    with pytest.raises(InvalidOptions) as raised:
        parse_options({**fields, "quality": "V2"})
    assert list(raised.value.errors) == [field] and problem in raised.value.errors[field]

