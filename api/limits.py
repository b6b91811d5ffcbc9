"""What the upload function's contract fixes, stated once for the function and for the OpenAPI document: the form's
limits and the tus protocol it speaks."""

# A multipart upload: one file part and the options as fields, each field a short text.
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16

# tus 1.0.0 (functions/upload/resumable.py) and the extensions it implements.
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
