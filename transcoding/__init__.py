"""The encoding engine convert and segment share: ffprobe and ffmpeg locked down for untrusted media, the plan of a
job's encode, segments and the MP3 frame joiner, loudness, tags and cover, the fan-out record, an attempt's outcome."""
