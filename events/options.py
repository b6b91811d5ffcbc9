"""Conversion options: the form fields and query parameters a user sends (`start=1:05 quality=V2 …`) in, one
validated `ConversionOptions` out, or every bad field named at once. The upload function, the video-uploaded event
(which carries them) and the `vid2mp3` command read them through this module, so all three accept the same words.

Every value is checked here, before it is stored or travels: times and numbers parsed to numbers, choices to their
fixed spellings, and tag text stripped of control characters and capped. Nothing a user typed ever reaches ffmpeg's
command line (tags are written into the MP3 in-process, transcoding/tagging.py).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CBR_QUALITIES = ("128", "192", "256", "320")
# LAME's VBR levels: V0 is the best (about 245 kbit/s), V9 the smallest (about 65 kbit/s).
VBR_QUALITIES = tuple(f"V{level}" for level in range(10))
QUALITIES = CBR_QUALITIES + VBR_QUALITIES
DEFAULT_LOUDNESS_LUFS = -16.0
LOUDNESS_RANGE_LUFS = (-23.0, -10.0)
COVERS = ("frame", "attached", "none")
# What becomes of the video's chapters: ID3 chapter markers in the MP3 (and the job's chapter list), or nothing.
CHAPTERS = ("markers", "none")
# What the MP3 is split into besides the whole: one file per chapter.
SPLITS = ("chapters",)
MAX_TAG_CHARS = 255
# Chapter markers in one MP3 at most (its tag, its job and its audio.converted event).
MAX_CHAPTERS = 1000
# trim_silence: what counts as silence, unless the user says (dBFS: below the loudest a sample can be), and how long
# it must last to be trimmed; and the ranges a user may set them in.
DEFAULT_SILENCE_THRESHOLD_DB = -50.0
SILENCE_THRESHOLD_RANGE_DB = (-90.0, -20.0)
DEFAULT_SILENCE_MIN_SECONDS = 0.5
SILENCE_MIN_RANGE_SECONDS = (0.05, 60.0)
# The form fields (and query parameters) that are options; `bitrate` is the older spelling of a CBR `quality`.
FIELDS = ("start", "end", "quality", "bitrate", "normalize", "loudness", "track", "channels", "title", "artist",
          "album", "date", "cover", "chapters", "split", "trim_silence", "silence_threshold_db", "silence_min_seconds",
          "feed")

Quality = Literal["128", "192", "256", "320", "V0", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9"]


def optional(**constraints: Any) -> Any:
    """An optional field, left out of the JSON when absent (so a payload names only the options given)."""
    return Field(exclude_if=lambda value: value is None, **constraints)


class ConversionOptions(BaseModel):
    """What the user asked of the MP3; absent fields keep vid2mp3's defaults (the whole audio, the bitrate of the
    event, the container's default track and channels, tags from the video's metadata, a frame as cover)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_seconds: Annotated[float | None, optional(ge=0, description="Trim: where the MP3 starts, in seconds of the "
                                                                   "video.")] = None
    end_seconds: Annotated[float | None, optional(gt=0, description="Trim: where the MP3 ends, in seconds of the "
                                                                 "video.")] = None
    quality: Annotated[Quality | None, optional(description="A LAME VBR level (`V0` best … `V9` smallest); a CBR "
                                                         "quality travels as `bitrate_kbps`.")] = None
    normalize: Annotated[Literal["ebu-r128"] | None, optional(description="Loudness normalisation (EBU R 128, "
                                                                       "two-pass, linear).")] = None
    loudness_lufs: Annotated[float | None, optional(ge=LOUDNESS_RANGE_LUFS[0], le=LOUDNESS_RANGE_LUFS[1],
                                                 description="Integrated loudness target with `normalize`; "
                                                             "-16 when absent.")] = None
    track: Annotated[int | None, optional(ge=0, le=99, description="0-based index among the video's audio "
                                                                "streams.")] = None
    channels: Annotated[Literal[1, 2] | None, optional(description="1 (mono) or 2 (stereo).")] = None
    title: Annotated[str | None, optional(min_length=1, max_length=MAX_TAG_CHARS, description="ID3 title.")] = None
    artist: Annotated[str | None, optional(min_length=1, max_length=MAX_TAG_CHARS, description="ID3 artist.")] = None
    album: Annotated[str | None, optional(min_length=1, max_length=MAX_TAG_CHARS, description="ID3 album.")] = None
    date: Annotated[str | None, optional(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
                                      description="ID3v2.4 recording date: YYYY, YYYY-MM or YYYY-MM-DD.")] = None
    cover: Annotated[Literal["frame", "attached", "none"] | None,
                     optional(description="Cover art: a frame at 10 % of the video (default when it has a "
                                       "picture), its attached picture, or none.")] = None
    chapters: Annotated[Literal["markers", "none"] | None,
                        optional(description="The video's chapters as ID3 chapter markers in the MP3, listed on the "
                                             "job and served as a JSON chapters document (default), or none.")] = None
    split: Annotated[Literal["chapters"] | None,
                     optional(description="Also one MP3 per chapter, cut from the same encode (gapless: played back "
                                          "to back they are the whole MP3), tagged with the chapter's title and "
                                          "track number n/N.")] = None
    trim_silence: Annotated[bool | None, optional(description="Trim the leading and trailing silence, measured on the "
                                                           "decoded audio.")] = None
    silence_threshold_db: Annotated[float | None, optional(
        ge=SILENCE_THRESHOLD_RANGE_DB[0], le=SILENCE_THRESHOLD_RANGE_DB[1],
        description=f"With `trim_silence`: quieter than this (dBFS) is silence; {DEFAULT_SILENCE_THRESHOLD_DB:g} "
                    "when absent.")] = None
    silence_min_seconds: Annotated[float | None, optional(
        ge=SILENCE_MIN_RANGE_SECONDS[0], le=SILENCE_MIN_RANGE_SECONDS[1],
        description=f"With `trim_silence`: the shortest silence trimmed; {DEFAULT_SILENCE_MIN_SECONDS:g} s when "
                    "absent.")] = None
    feed: Annotated[bool | None, optional(description="false: leave this MP3 out of the owner's private podcast "
                                                   "feed (it is listed by default).")] = None

    @property
    def is_vbr(self) -> bool:
        return self.quality is not None and self.quality.startswith("V")

    @property
    def cbr_kbps(self) -> int | None:
        return int(self.quality) if self.quality is not None and not self.is_vbr else None

    def for_event(self) -> ConversionOptions | None:
        """What the video-uploaded event carries beside `bitrate_kbps`, which holds a CBR quality (None: nothing,
        so an upload with no option, or a bitrate only, sends the v1 payload as it always was)."""
        rest = self.model_copy(update={"quality": None}) if self.cbr_kbps else self
        return rest if rest.given() else None

    @property
    def trimmed(self) -> bool:
        return bool(self.start_seconds) or self.end_seconds is not None

    @property
    def silence_threshold(self) -> float:
        return DEFAULT_SILENCE_THRESHOLD_DB if self.silence_threshold_db is None else self.silence_threshold_db

    @property
    def silence_min_length(self) -> float:
        return DEFAULT_SILENCE_MIN_SECONDS if self.silence_min_seconds is None else self.silence_min_seconds

    @property
    def target_loudness(self) -> float:
        return DEFAULT_LOUDNESS_LUFS if self.loudness_lufs is None else self.loudness_lufs

    def given(self) -> dict[str, Any]:
        """Only the options the user gave, as JSON (what the job record and the event carry)."""
        return self.model_dump(mode="json")


class InvalidOptions(ValueError):
    """One or more options are invalid; `errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in errors.items()))
        self.errors = errors


TIME_OF_DAY = re.compile(r"^(?:(\d{1,3}):)?([0-5]?\d):([0-5]\d)(?:\.(\d{1,3}))?$")
SECONDS = re.compile(r"^\d{1,6}(?:\.\d{1,6})?$")


def parse_time(text: str) -> float:
    """Seconds (`12.5`) or `[HH:]MM:SS[.mmm]` (`1:02:03.250`) to seconds."""
    if SECONDS.match(text):
        return float(text)
    clock = TIME_OF_DAY.match(text)
    if clock is None:
        raise ValueError("give seconds (12.5) or [HH:]MM:SS[.mmm] (01:02:03.250)")
    hours, minutes, seconds, millis = clock.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int((millis or "0").ljust(3, "0")) / 1000


def parse_quality(text: str) -> str:
    spelled = text.upper().removesuffix("K")
    if spelled not in QUALITIES:
        raise ValueError(f"give one of {', '.join(CBR_QUALITIES)} (CBR kbit/s) or V0…V9 (VBR)")
    return spelled


def parse_bitrate(text: str) -> str:
    spelled = text.lower().removesuffix("k")
    if spelled not in CBR_QUALITIES:
        raise ValueError(f"give one of {', '.join(CBR_QUALITIES)} (kbit/s)")
    return spelled


def parse_choice(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"give one of {', '.join(choices)}")
        return text.lower()
    return parse


def parse_number_in(bounds: tuple[float, float], unit: str) -> Any:
    def parse(text: str) -> float:
        low, high = bounds
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise ValueError(f"give a number from {low:g} to {high:g} {unit}")
        return value
    return parse


def parse_switch(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("give true or false")
    return text.lower() == "true"


def parse_track(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 99:
        raise ValueError("give the 0-based index of an audio track (0, 1, …)")
    return int(text)


def parse_channels(text: str) -> int:
    if text not in ("1", "2"):
        raise ValueError("give 1 (mono) or 2 (stereo)")
    return int(text)


def clean_text(text: str, *, cut: bool = False) -> str:
    """Tag text: normalised, without control characters (tabs and newlines become spaces), at most 255 characters.
    Also applied to tags read from a video's own metadata, which are as untrusted as the video."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch)[0] in ("C", "Z") else ch for ch in text)
    text = re.sub(r" {2,}", " ", text).strip()
    if len(text) > MAX_TAG_CHARS and not cut:
        raise ValueError(f"at most {MAX_TAG_CHARS} characters")
    return text


def metadata_text(value: object, limit: int = MAX_TAG_CHARS) -> str | None:
    """Text read from a video's own metadata (as untrusted as the video): cleaned like a user's tag, cut to
    `limit` characters; None when nothing is left."""
    if not isinstance(value, str):
        return None
    return clean_text(value[:4 * limit], cut=True)[:limit].strip() or None


def parse_date(text: str) -> str:
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", text):
        raise ValueError("give YYYY, YYYY-MM or YYYY-MM-DD")
    parts = [int(part) for part in text.split("-")]
    if (len(parts) > 1 and not 1 <= parts[1] <= 12) or (len(parts) > 2 and not 1 <= parts[2] <= 31):
        raise ValueError("not a calendar date")
    return text


# Field name → (parser, name in ConversionOptions).
PARSERS: dict[str, tuple[Any, str]] = {
    "start": (parse_time, "start_seconds"),
    "end": (parse_time, "end_seconds"),
    "quality": (parse_quality, "quality"),
    "bitrate": (parse_bitrate, "quality"),
    "normalize": (parse_choice(("ebu-r128",)), "normalize"),
    "loudness": (parse_number_in(LOUDNESS_RANGE_LUFS, "LUFS"), "loudness_lufs"),
    "track": (parse_track, "track"),
    "channels": (parse_channels, "channels"),
    "title": (clean_text, "title"),
    "artist": (clean_text, "artist"),
    "album": (clean_text, "album"),
    "date": (parse_date, "date"),
    "cover": (parse_choice(COVERS), "cover"),
    "chapters": (parse_choice(CHAPTERS), "chapters"),
    "split": (parse_choice(SPLITS), "split"),
    "trim_silence": (parse_switch, "trim_silence"),
    "silence_threshold_db": (parse_number_in(SILENCE_THRESHOLD_RANGE_DB, "dBFS"), "silence_threshold_db"),
    "silence_min_seconds": (parse_number_in(SILENCE_MIN_RANGE_SECONDS, "s"), "silence_min_seconds"),
    "feed": (parse_switch, "feed"),
}


def unknown_option(name: str) -> str:
    """What is wrong with a field that is no option, with the option it was most likely meant to be."""
    likely = difflib.get_close_matches(name.lower(), FIELDS, n=1, cutoff=0.6)
    return (f"not an option; did you mean {likely[0]!r}?" if likely
            else f"not an option; the options are {', '.join(FIELDS)}")


# A switch given as its default changes nothing, so it is left out (the job and the event name only what changes).
SWITCH_DEFAULTS = {"trim_silence": False, "feed": True}


def parse_options(fields: Mapping[str, str]) -> ConversionOptions:
    """The options in `fields` (form fields or query parameters, less what their reader takes itself, such as a
    query's `filename`), or InvalidOptions naming every bad field at once. A name that is no option is a bad field
    too: a typo (`qualty=V0`) must not convert without the user's choice. Empty fields count as absent (an HTML form
    sends them)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {name: unknown_option(name) for name in fields if name not in FIELDS}
    for name in FIELDS:
        text = (fields.get(name) or "").strip()
        if not text:
            continue
        parser, target = PARSERS[name]
        try:
            value = parser(text)
        except ValueError as error:
            errors[name] = str(error)
            continue
        if (name == "bitrate" and "quality" in values | errors) or value == "" or value is SWITCH_DEFAULTS.get(name):
            continue  # `quality` is the newer spelling and wins; an empty tag is no tag; a switch's default is none
        values[target] = value
    start, end = values.get("start_seconds"), values.get("end_seconds")
    if start is not None and end is not None and end <= start:
        errors["end"] = f"must come after start ({start:g} s)"
    if end is not None and end <= 0:
        errors["end"] = "must be after the beginning"
    if "loudness_lufs" in values and "normalize" not in values:
        errors["loudness"] = "only applies with normalize=ebu-r128"
    for name in ("silence_threshold_db", "silence_min_seconds"):
        if name in values and "trim_silence" not in values:
            errors[name] = "only applies with trim_silence=true"
    if "trim_silence" in values and ("start_seconds" in values or "end_seconds" in values):
        # The silence decides the range: a start or an end given too would be overruled or contradicted.
        errors["trim_silence"] = "give either trim_silence=true or a trim (start, end), not both"
    if values.get("split") == "chapters" and values.get("chapters") == "none":
        errors["split"] = "split=chapters cuts the MP3 at its chapters, which chapters=none drops"
    if errors:
        raise InvalidOptions(errors)
    return ConversionOptions(**values)


def as_fields(options: ConversionOptions) -> dict[str, str]:
    """The form fields that say `options` again (the inverse of parse_options), for clients."""
    given = options.given()
    names = {target: name for name, (_, target) in PARSERS.items() if name != "bitrate"}
    return {names[key]: (f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value))
            for key, value in given.items()}
