"""What the functions' contracts fix, stated once for the functions and for the OpenAPI document: the upload form's
limits and the tus protocol it speaks, and how many MP3s one ZIP of the download function holds."""

from transcoding.extraction import MAX_CHAPTERS_BYTES
from transcoding.tagging import MAX_COVER_BYTES

# A multipart upload: one file part and the options as fields, each field a short text; and, from a client that
# uploads an extract, the video's cover frame (`cover`: JPEG or PNG) and its chapters (`chapters`: JSON).
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
__all__ = ["MAX_CHAPTERS_BYTES", "MAX_COVER_BYTES", "MAX_FIELD_BYTES", "MAX_PARTS", "MAX_ZIP_JOBS", "TUS_EXTENSIONS",
           "TUS_VERSION"]

# tus 1.0.0 (functions/upload/resumable.py) and the extensions it implements.
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"

# At most this many jobs in one ZIP of the download function: their ids (33 bytes each with the comma) keep the URL
# well under the 8 KiB that servers and proxies commonly take.
MAX_ZIP_JOBS = 100
