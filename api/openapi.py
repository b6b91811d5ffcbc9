"""The public HTTP functions as one OpenAPI 3.1 document, its schemas taken from the models the functions build
their answers with (so the two cannot drift): auth, upload (one-shot and tus), status (with its Server-Sent
Events stream), download and webhooks.

Each function has a URL of its own (Knative: one per Service), so every path item names its function's server, a
server variable whose default is that function's public URL; and every path carries its function's name as a
prefix, which each function also answers under (endpoints/http.py `also_under`): the functions' own paths
overlap (`GET /` is the status list and the webhooks list). Links chain the operations the way a client does
(upload → status → download, cancel, delete), for readers and for schemathesis's stateful tests.

Served by the web function at `/openapi.json`; `python -m api.openapi` prints it (with the local stack's
default URLs unless given `--urls`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from accounts.feeds import FeedView
from accounts.keys import KeyList, KeyRequest, NewKey
from accounts.store import AccessToken, AccountView, Credentials, PasswordChange, PasswordConfirmation, SignedUp
from api.answers import ImportAccepted, JobList, UploadAccepted
from api.limits import (
    MAX_CHAPTERS_BYTES,
    MAX_COVER_BYTES,
    MAX_FIELD_BYTES,
    MAX_PARTS,
    MAX_ZIP_JOBS,
    TUS_EXTENSIONS,
    TUS_VERSION,
)
from events.catalog import JOB_ID_PATTERN, FailureReason
from events.options import (
    CBR_QUALITIES,
    CHAPTERS,
    COVERS,
    DEFAULT_SILENCE_MIN_SECONDS,
    DEFAULT_SILENCE_THRESHOLD_DB,
    LOUDNESS_RANGE_LUFS,
    MAX_TAG_CHARS,
    SILENCE_MIN_RANGE_SECONDS,
    SILENCE_THRESHOLD_RANGE_DB,
    SPLITS,
)
from jobs.view import JobView
from runtime.answers import ErrorBody
from runtime.settings import UploadSettings
from webhooks.registry import (
    EndpointList,
    EndpointRequest,
    EndpointWithDeliveries,
    EndpointWithSecret,
    RotatedEndpoint,
)

OPENAPI_VERSION = "3.1.0"
PUBLIC_FUNCTIONS = ("auth", "upload", "status", "download", "webhooks")
# What `python -m api.openapi` fills in without `--urls`: the local stack's default ports.
LOCAL_URLS = {"auth": "http://127.0.0.1:18101", "upload": "http://127.0.0.1:18102",
              "status": "http://127.0.0.1:18103", "download": "http://127.0.0.1:18104",
              "webhooks": "http://127.0.0.1:18111"}
ENDPOINT_ID_PATTERN = "^ep_[0-9a-f]{24}$"
# The reasons the upload's extraction refuses a file with (transcoding/extraction.py): the conversion's.
EXTRACTION_REFUSALS = tuple(str(reason) for reason in (
    FailureReason.NOT_MEDIA, FailureReason.NO_AUDIO, FailureReason.TOO_LONG, FailureReason.TOO_MANY_STREAMS,
    FailureReason.CONVERSION_ERROR, FailureReason.INVALID_OUTPUT))

# (model, mode): answers are described as the code serialises them, request bodies as it validates them.
MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (ErrorBody, "serialization"), (SignedUp, "serialization"), (AccessToken, "serialization"),
    (AccountView, "serialization"),
    (Credentials, "validation"), (PasswordConfirmation, "validation"), (PasswordChange, "validation"),
    (KeyRequest, "validation"), (NewKey, "serialization"), (KeyList, "serialization"), (FeedView, "serialization"),
    (UploadAccepted, "serialization"), (ImportAccepted, "serialization"),
    (JobView, "serialization"), (JobList, "serialization"), (EndpointRequest, "validation"),
    (EndpointList, "serialization"), (EndpointWithSecret, "serialization"),
    (EndpointWithDeliveries, "serialization"), (RotatedEndpoint, "serialization"),
]


def component_schemas() -> tuple[dict[str, Any], dict[str, str]]:
    """Every model's JSON Schema (2020-12, which OpenAPI 3.1 uses as is) under components/schemas, and the
    reference to each model."""
    keys, definitions = models_json_schema(MODELS, ref_template="#/components/schemas/{model}")
    references = {model.__name__: keys[(model, mode)]["$ref"] for model, mode in MODELS}
    return definitions["$defs"], references


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


RETRY_AFTER = header("Seconds to wait before trying again.", {"type": "string", "pattern": "^[0-9]+$"})


def error(description: str, *, retry: bool = False, extra_headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": json_content(ref("ErrorBody"))}
    headers = {**({"Retry-After": RETRY_AFTER} if retry else {}), **(extra_headers or {})}
    if headers:
        answer["headers"] = headers
    return answer


UNAUTHORIZED = error("No bearer token, or one that is not valid (expired, wrong signature, issuer or audience, or "
                     "issued before its account was deleted or its password changed).",
                     extra_headers={"WWW-Authenticate": header(
                         "RFC 6750's challenge: `Bearer realm=\"vid2mp3\"`, with `error=\"invalid_token\"` when a "
                         "token was sent that is not valid.")})
# A JSON body is read only so far (endpoints/http.py `read_json`).
JSON_BODY_ERRORS = {
    "400": error("Not JSON, or JSON nested more than 32 deep."),
    "413": error("A JSON body over 64 KiB (refused on its Content-Length before it is read)."),
}
UNAVAILABLE = error("A data store is not answering (or too many requests of this user at once): try again.",
                    retry=True)
OVER_QUOTA = error("Over a per-user quota, named in `X-Quota-Limit` and in the message.", retry=True,
                   extra_headers={"X-Quota-Limit": header("The quota reached.", {
                       "enum": ["jobs_in_flight", "uploads_per_hour", "media_bytes", "live_streams"]})})
JOB_NOT_FOUND = error("No such job; someone else's job answers the same.")


def owned_resource_errors(not_found: dict[str, Any]) -> dict[str, Any]:
    """What any operation on one of the caller's jobs or endpoints may answer besides its own."""
    return {"401": UNAUTHORIZED, "404": not_found, "503": UNAVAILABLE}


def job_id_parameter() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "description": "The job's id (32 hex digits).",
            "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}


def option_parameters() -> list[dict[str, Any]]:
    """The conversion options (events/options.py) as query parameters; the multipart form takes the same names."""
    return [{"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in option_field_schemas().items()]


def caseless(word: str) -> str:
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isalpha() else char for char in word)


def spelled(*alternatives: str) -> dict[str, Any]:
    """A field's accepted spellings: the parser trims it, and an empty field counts as absent (a form sends them)."""
    return {"type": "string", "pattern": rf"^\s*({'|'.join(alternatives)})?\s*$"}


def or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


def option_field_schemas() -> dict[str, dict[str, Any]]:
    """Each option as the upload reads it (events/options.py: trimmed, case-insensitive, empty = absent). Options
    that each fit may still conflict (an end before the start, a loudness without normalize): 422 names them."""
    time = r"\d{1,6}(\.\d{1,6})?|(\d{1,3}:)?[0-5]?\d:[0-5]\d(\.\d{1,3})?"
    cbr = "|".join(CBR_QUALITIES)
    tag = {"type": "string", "maxLength": MAX_TAG_CHARS}
    return {
        "start": {**spelled(time), "description": "Trim: where the MP3 starts, in seconds (`12.5`) or "
                                                  "`[HH:]MM:SS[.mmm]`."},
        "end": {**spelled(time), "description": "Trim: where the MP3 ends (after `start`), in the same form."},
        "quality": {**spelled(f"({cbr})[kK]?", "[vV][0-9]"),
                    "description": f"CBR kbit/s ({', '.join(CBR_QUALITIES)}) or a LAME VBR level (`V0` best … `V9` "
                                   "smallest)."},
        "bitrate": {**spelled(f"({cbr})[kK]?"), "description": "The older spelling of a CBR `quality`."},
        "normalize": {**spelled(caseless("ebu-r128")), "description": "Loudness normalisation (EBU R 128)."},
        "loudness": or_empty({"type": "number", "minimum": LOUDNESS_RANGE_LUFS[0],
                              "maximum": LOUDNESS_RANGE_LUFS[1], "description": "LUFS target; with `normalize`."}),
        "track": or_empty({"type": "integer", "minimum": 0, "maximum": 99, "description": "0-based audio track."}),
        "channels": or_empty({"type": "integer", "enum": [1, 2], "description": "1 (mono) or 2 (stereo)."}),
        "title": tag, "artist": tag, "album": tag,
        "date": spelled(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?"),
        "cover": spelled(*(caseless(cover) for cover in COVERS)),
        "chapters": {**spelled(*(caseless(choice) for choice in CHAPTERS)),
                     "description": "`markers` (default): the video's chapters as ID3 chapter markers, listed on the "
                                    "job and served as JSON; `none`: no chapters."},
        "split": {**spelled(*(caseless(choice) for choice in SPLITS)),
                  "description": "`chapters`: also one MP3 per chapter, cut from the same encode (gapless: played "
                                 "back to back they are the whole MP3), tagged with the chapter's title and track "
                                 "number n/N; the video must have a chapter (within the trim), and not with "
                                 "`chapters=none`."},
        "trim_silence": {**spelled(caseless("true"), caseless("false")),
                         "description": "`true`: the leading and trailing silence trimmed (measured on the decoded "
                                        "audio; not with `start`/`end`)."},
        "silence_threshold_db": or_empty({"type": "number", "minimum": SILENCE_THRESHOLD_RANGE_DB[0],
                                          "maximum": SILENCE_THRESHOLD_RANGE_DB[1],
                                          "description": "dBFS below which is silence; with `trim_silence`; "
                                                         f"{DEFAULT_SILENCE_THRESHOLD_DB:g} when absent."}),
        "silence_min_seconds": or_empty({"type": "number", "minimum": SILENCE_MIN_RANGE_SECONDS[0],
                                         "maximum": SILENCE_MIN_RANGE_SECONDS[1],
                                         "description": "The shortest silence trimmed; with `trim_silence`; "
                                                        f"{DEFAULT_SILENCE_MIN_SECONDS:g} s when absent."}),
        "feed": {**spelled(caseless("true"), caseless("false")),
                 "description": "`false`: this MP3 stays out of the owner's private podcast feed (`GET /feed` on "
                                "the download function); listed by default."},
    }


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description, "parameters": parameters}


def links_from_job(expression: str) -> dict[str, Any]:
    """Where a client goes from an answer that names a job (`expression` finds its id)."""
    return {
        "GetJob": link("getJob", "Follow the job.", job_id=expression),
        "FollowJobEvents": link("followJobEvents", "Follow the job live.", job_id=expression),
        "CancelJob": link("cancelJob", "Cancel it.", job_id=expression),
        "DownloadMp3": link("downloadMp3", "Download its MP3 once it is done.", job_id=expression),
        "DeleteJob": link("deleteJob", "Delete it with its media.", job_id=expression),
    }


def password_confirmed(unprocessable: str) -> dict[str, Any]:
    """The refusals of an operation the account's password confirms (as a login, throttle included)."""
    return {"401": UNAUTHORIZED, "403": error("The password does not match this account."), **JSON_BODY_ERRORS,
            "422": error(unprocessable), "429": error("Too many failed confirmations.", retry=True),
            "503": UNAVAILABLE}


def auth_paths() -> dict[str, Any]:
    credentials_body = {"required": True, "content": json_content(ref("Credentials"))}
    return {
        "/auth/signup": {"post": {
            "operationId": "signUp", "tags": ["auth"], "security": [], "summary": "Create an account.",
            "requestBody": credentials_body,
            "description": "Answers the same whether or not the address has an account, so that a sign-up tells "
                           "nobody which addresses have one: the owner of an existing account is told by email "
                           "instead, and nothing of the account changes.",
            "responses": {
                "201": {"description": "Signed up (or the address had an account: the same answer).",
                        "headers": {"Location": header("`account`: the account, relative to this URL.")},
                        "content": json_content(ref("SignedUp")),
                        "links": {"LogIn": {"operationId": "logIn", "requestBody": "$request.body",
                                            "description": "Log in with the same credentials."}}},
                **JSON_BODY_ERRORS,
                "422": error("Not an email address and a password of 8 to 1024 characters."),
                "429": error("Too many sign-ups from this address this hour.", retry=True),
                "503": UNAVAILABLE,
            }}},
        "/auth/login": {"post": {
            "operationId": "logIn", "tags": ["auth"], "security": [], "summary": "Get a bearer token.",
            "requestBody": credentials_body,
            "responses": {
                "200": {"description": "The token.", "content": json_content(ref("AccessToken"))},
                "401": error("Wrong email address or password (the same answer for both).", extra_headers={
                    "WWW-Authenticate": header("`Password realm=\"vid2mp3\", charset=\"UTF-8\"`: the credentials "
                                               "go in the JSON body.")}),
                **JSON_BODY_ERRORS,
                "422": error("Not an email address and a password of 8 to 1024 characters."),
                "429": error("Too many failed logins: for this account from this client address, from this address "
                             "over all accounts, or for this account from addresses it never logged in from.",
                             retry=True),
                "503": UNAVAILABLE,
            }}},
        "/auth/.well-known/jwks.json": {"get": {
            "operationId": "getJwks", "tags": ["auth"], "security": [],
            "summary": "The public keys (EdDSA, Ed25519) the tokens are signed with.",
            "responses": {"200": {"description": "A JSON Web Key Set (RFC 7517).", "content": json_content({
                "type": "object", "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {
                    "type": "object", "required": ["kty", "kid"],
                    "properties": {"kty": {"type": "string"}, "crv": {"type": "string"}, "x": {"type": "string"},
                                   "kid": {"type": "string"}, "alg": {"type": "string"},
                                   "use": {"type": "string"}}}}}})}},
        }},
        "/auth/account": {"get": {
            "operationId": "getAccount", "tags": ["auth"], "summary": "The token's account.",
            "responses": {"200": {"description": "The account.", "content": json_content(ref("AccountView"))},
                          "401": UNAUTHORIZED}}, "delete": {
            "operationId": "deleteAccount", "tags": ["auth"],
            "summary": "Delete the account with all its jobs, media, webhook endpoints and quota usage.",
            "requestBody": {"required": True, "content": json_content(ref("PasswordConfirmation"))},
            "responses": {"204": {"description": "Deleted."}, **password_confirmed("No password given.")}}},
        "/auth/account/password": {"post": {
            "operationId": "changePassword", "tags": ["auth"], "summary": "Change the password.",
            "description": "The current password is confirmed as a login is. Every token and signed download link "
                           "issued before stops working on every function within 30 seconds; the answer holds "
                           "a token of the new password.",
            "requestBody": {"required": True, "content": json_content(ref("PasswordChange"))},
            "responses": {
                "200": {"description": "Changed: a token of the new password.",
                        "content": json_content(ref("AccessToken"))},
                **password_confirmed("No current password, or a new one that is not 8 to 1024 characters."),
            }}},
        "/auth/keys": {"get": {
            "operationId": "listKeys", "tags": ["auth"], "summary": "Your API keys (never their secrets).",
            "description": "Only the keys that work: those a password change ended are gone from the list (and no "
                           "longer count against the limit of 20).",
            "responses": {"200": {"description": "The keys.", "content": json_content(ref("KeyList"))},
                          "401": UNAUTHORIZED, "503": UNAVAILABLE}}, "post": {
            "operationId": "createKey", "tags": ["auth"], "summary": "Make an API key, for a script.",
            "description": "The key (`v2m_` and 80 hex digits) is in this answer only; it is stored hashed. Send it "
                           "as `Authorization: Bearer <key>` wherever a token goes: each operation names the scope "
                           "it needs (`apiKey`). It stops when revoked, when it expires, and with the password.",
            "requestBody": {"required": True, "content": json_content(ref("KeyRequest"))},
            "responses": {
                "201": {"description": "Made.", "content": json_content(ref("NewKey")),
                        "headers": {"Location": header("`keys/<id>`, relative to this URL.")}},
                "401": UNAUTHORIZED, **JSON_BODY_ERRORS,
                "409": error("The account has as many keys as it may (20)."),
                "422": error("No name, or scopes that are not some of convert, read, delete, webhooks."),
                "503": UNAVAILABLE}}},
        "/auth/keys/{key_id}": {"delete": {
            "operationId": "revokeKey", "tags": ["auth"],
            "summary": "Revoke an API key: every function refuses it within 30 seconds.",
            "parameters": [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "Revoked."}, "401": UNAUTHORIZED,
                          "404": error("No such key; someone else's answers the same."), "503": UNAVAILABLE}}},
    }


def upload_paths() -> dict[str, Any]:
    form = {"type": "object", "required": ["file"], "maxProperties": MAX_PARTS,
            # Any other field is refused (422 naming it): a misspelt option must not convert without it.
            "additionalProperties": False,
            "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream",
                                    "minLength": 1, "description": "The video (or audio) file."},
                           **option_field_schemas(),
                           "chapters": {"anyOf": [option_field_schemas()["chapters"], {
                               "type": "string", "contentMediaType": "application/json",
                               "description": f"As a file part: JSON, at most {MAX_CHAPTERS_BYTES} bytes, "
                                              '`[{"start": seconds, "end": seconds, "title": text}, ...]` (`end`, '
                                              "`title` optional), written into the kept audio when the file has no "
                                              "chapters of its own."}],
                                        "description": "A plain field is the option; a file part the chapters."}}}
    return {"/upload/": {"post": {
        "operationId": "uploadVideo", "tags": ["upload"],
        "summary": "Upload a video in one request: it becomes a job that converts to MP3.",
        "description": "A multipart form with one file part (and the options as fields; from a client that "
                       "extracted the audio itself, `cover` and `chapters` parts: a `cover` part with a file name is "
                       f"the picture, the video's frame at 10 %, a JPEG or PNG of at most {MAX_COVER_BYTES} bytes, "
                       "decoded and scaled by the server, the frame cover when the file has no picture of its own; a "
                       "plain `cover` field is the option), or the raw file as the body (any media type other than "
                       "multipart; options as query parameters, `filename` too). A field, query parameter or "
                       "tus metadata key that is no option is refused (422 `invalid_options` naming it). The "
                       "container must be one vid2mp3 reads (415 otherwise); the size is limited (413). What is "
                       "kept is the audio: every audio track, copied, with its metadata and chapters, and the "
                       "covers (the frame at 10 %, the attached picture); never the whole file (`stored_bytes` in "
                       "the answer). A file that cannot be converted is refused here (422, its reason as `error`).",
        "parameters": [{"name": "filename", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": "The file's name, with a raw body (kept only as a label)."},
                       *option_parameters()],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": form},
            "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream",
                                                    "minLength": 1}},
            "application/json": {"schema": {
                "type": "object", "required": ["url"],
                "description": "Import: the server fetches the video at `url` (http or https; each redirect "
                               "followed, at most 5, and every address checked: none internal, 422 `url_refused`) "
                               "and takes it as an upload of it, with the options beside the URL.",
                "properties": {"url": {"type": "string", "maxLength": 2048}, **option_field_schemas()}}},
        }},
        "responses": {
            "202": {"description": "Accepted: the job is recorded and converts next. An import is accepted once "
                                   "the URL's answer has begun (every refusal above is known by then): its job is "
                                   "`importing` while the server fetches the video (`ImportAccepted`; the job view "
                                   "shows the bytes fetched, a cancel stops the fetch), then `uploaded`, or `failed` "
                                   "with the reason (`import_failed`, or the conversion's own, such as `not_media`).",
                    "headers": {"Location": header("The job's status URL.")},
                    "content": json_content({"oneOf": [ref("UploadAccepted"), ref("ImportAccepted")]}),
                    "links": links_from_job("$response.body#/job_id")},
            "400": error("Not an upload that can be read (an empty body, a malformed form, two files, more than "
                         f"{MAX_PARTS} parts, a field over {MAX_FIELD_BYTES} bytes), or a body that ended before its "
                         "`Content-Length` or its last chunk (`incomplete_body`: the client gave up; nothing of it "
                         "is kept or counted)."),
            "401": UNAUTHORIZED,
            "413": error("Larger than the upload limit."),
            "415": error("Not a video or audio container vid2mp3 reads."),
            "422": error("Bad or unknown conversion options or `cover`/`chapters` parts (`error` "
                         "`invalid_options`; `fields` names each with its problem), or a file the server cannot "
                         f"convert: `error` is the reason ({', '.join(EXTRACTION_REFUSALS)}); for an import, a URL "
                         "that may not or could not be fetched (`url_required`, `url_refused`, `too_many_redirects`, "
                         "`url_not_fetched`, `url_unreachable`)."),
            "429": OVER_QUOTA,
            "503": UNAVAILABLE,
        }}}, **tus_paths()}


def tus_paths() -> dict[str, Any]:
    """tus 1.0.0 (https://tus.io/protocols/resumable-upload) under `/files/`, as the upload function speaks it."""
    resumable = {"name": "Tus-Resumable", "in": "header", "required": True,
                 "schema": {"type": "string", "const": TUS_VERSION}}
    upload_id = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string",
                                                                                 "pattern": JOB_ID_PATTERN},
                 "description": "The upload's id, which becomes its job's id once the last byte lands."}
    tus_header = {"Tus-Resumable": header("`1.0.0`")}
    expires = {"Upload-Expires": header("When an unfinished upload is deleted (RFC 9110 date).")}
    offset = {"Upload-Offset": header("Bytes received so far.", {"type": "string", "pattern": "^[0-9]+$"})}

    def tus_error(description: str, **more: Any) -> dict[str, Any]:
        answer = error(description, **more)
        answer["headers"] = {**answer.get("headers", {}), **tus_header}
        return answer

    common_errors = {
        "400": tus_error("A malformed tus header."),
        "401": tus_error("No bearer token, or one that is not valid."),
        "412": tus_error("An unsupported `Tus-Resumable`.",
                         extra_headers={"Tus-Version": header("`1.0.0`")}),
        "503": tus_error("The store or the broker is unavailable.", retry=True),
    }
    upload_errors = {**common_errors, "404": tus_error("No such upload; someone else's upload answers the same.")}
    least = UploadSettings.model_fields["resumable_min_patch_bytes"].default
    body_refused = tus_error(
        "A malformed tus header; a body smaller than a PATCH's least (`patch_too_small`): every request but the "
        f"one that ends the upload brings at least `RESUMABLE_MIN_PATCH_BYTES` ({least} bytes by default), "
        "refused before its body is read when its `Content-Length` says so; or a body that ended before its "
        "`Content-Length` (`incomplete`): the bytes that came count, and the offset moves on, only when at "
        "least that many came and no `Upload-Checksum` was sent.")
    return {
        "/upload/files/": {
            "options": {
                "operationId": "tusOptions", "tags": ["upload", "tus"], "security": [],
                "summary": "What this tus server supports.",
                "responses": {"204": {"description": "Its version, extensions, size limit and checksums.",
                                      "headers": {**tus_header, "Tus-Version": header("`1.0.0`"),
                                                  "Tus-Extension": header(f"`{TUS_EXTENSIONS}`"),
                                                  "Tus-Max-Size": header("The one-shot upload's limit too.", {
                                                      "type": "string", "pattern": "^[0-9]+$"}),
                                                  "Tus-Checksum-Algorithm": header("`sha1`")}}}},
            "post": {
                "operationId": "tusCreate", "tags": ["upload", "tus"],
                "summary": "Create a resumable upload (creation, creation-with-upload).",
                "description": "`Upload-Metadata` may carry `filename`, `filetype` (ignored: the container is "
                               "sniffed) and the conversion options by the one-shot upload's field names (validated "
                               "here: 422, any other key too). Quotas are reserved here.",
                "parameters": [
                    resumable,
                    {"name": "Upload-Length", "in": "header", "required": True,
                     "description": "Positive: an empty file is no video.",
                     "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}},
                    {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"},
                     "description": "tus's `key base64value,…`."},
                ],
                "requestBody": {"required": False, "content": {"application/offset+octet-stream": {
                    "schema": {"contentMediaType": "application/octet-stream"}}}},
                "responses": {
                    "201": {"description": "Created.", "headers": {
                        **tus_header, **expires, "Location": header("`<upload URL>/files/<upload_id>`"),
                        "Upload-Offset": header("With a body: bytes received.")}},
                    **common_errors,
                    "400": body_refused,
                    "413": tus_error("`Upload-Length` is over `Tus-Max-Size`."),
                    "415": tus_error("The first bytes are not a media container vid2mp3 reads."),
                    "422": tus_error("Bad or unknown options in `Upload-Metadata`: `fields` names each."),
                    "429": tus_error("Over a quota.", retry=True),
                }},
        },
        "/upload/files/{upload_id}": {
            "parameters": [upload_id, resumable],
            "head": {
                "operationId": "tusOffset", "tags": ["upload", "tus"], "summary": "How much has arrived.",
                "description": "An upload whose every byte is in but whose job is not recorded yet (the server "
                               "finishing it died) is finished before the answer, which may then be 422 as a last "
                               "PATCH's; a finished upload answers complete.",
                "responses": {"200": {"description": "The offset.", "headers": {
                    **tus_header, **offset, **expires,
                    "Upload-Length": header("The upload's length."),
                    "Cache-Control": header("`no-store`")}}, **upload_errors,
                    "410": tus_error("The upload expired."),
                    "422": tus_error("The finished upload cannot be converted (its reason as `error`): it ends.")}},
            "patch": {
                "operationId": "tusAppend", "tags": ["upload", "tus"],
                "summary": "Send more bytes, from `Upload-Offset`. The last one makes the job (202 semantics).",
                "description": f"Every PATCH but the last brings at least `RESUMABLE_MIN_PATCH_BYTES` ({least} "
                               "bytes by default; tus clients send far more: the web page and the command 8 MiB).",
                "parameters": [
                    {"name": "Upload-Offset", "in": "header", "required": True,
                     "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                    {"name": "Upload-Checksum", "in": "header", "required": False,
                     "description": "`sha1 <base64 of the body's 20-byte SHA-1>`.",
                     "schema": {"type": "string", "pattern": "^sha1 [A-Za-z0-9+/]{27}=$"}},
                ],
                "requestBody": {"required": True, "content": {"application/offset+octet-stream": {
                    "schema": {"contentMediaType": "application/octet-stream"}}}},
                "responses": {
                    "204": {"description": "Taken.", "headers": {**tus_header, **offset, **expires}},
                    **upload_errors,
                    "400": body_refused,
                    "409": tus_error("`Upload-Offset` is not the upload's offset."),
                    "410": tus_error("The upload expired."),
                    "413": tus_error("Past `Upload-Length`."),
                    "415": tus_error("Not `application/offset+octet-stream`, or not a media container."),
                    "422": tus_error("The last byte is in, and the file cannot be converted: `error` is the "
                                     f"reason ({', '.join(EXTRACTION_REFUSALS)}); the upload ends."),
                    "460": tus_error("Checksum mismatch: the bytes were discarded, the offset is unchanged."),
                }},
            "delete": {
                "operationId": "tusTerminate", "tags": ["upload", "tus"], "summary": "Abandon the upload.",
                "responses": {"204": {"description": "Its bytes are gone.", "headers": tus_header},
                              **upload_errors}},
        },
    }


def status_paths() -> dict[str, Any]:
    job_answer = {"description": "The job.", "content": json_content(ref("JobView")),
                  "links": links_from_job("$response.body#/job_id")}
    return {
        "/status/": {"get": {
            "operationId": "listJobs", "tags": ["status"], "summary": "Your recent jobs and your usage of "
                                                                     "each quota.",
            "responses": {"200": {"description": "The list.", "content": json_content(ref("JobList"))},
                          "401": UNAUTHORIZED, "503": UNAVAILABLE}}},
        "/status/{job_id}": {
            "parameters": [job_id_parameter()],
            "get": {"operationId": "getJob", "tags": ["status"], "summary": "A job: state, history, progress, "
                                                                           "its MP3 once done.",
                    "responses": {"200": job_answer, **owned_resource_errors(JOB_NOT_FOUND)}},
            "delete": {"operationId": "deleteJob", "tags": ["status"],
                       "summary": "Delete a job with its media at once (cancelling it first if it runs).",
                       "responses": {"204": {"description": "Deleted."}, **owned_resource_errors(JOB_NOT_FOUND)}},
        },
        "/status/{job_id}/events": {
            "parameters": [job_id_parameter()],
            "get": {"operationId": "followJobEvents", "tags": ["status"],
                    "summary": "The job's changes as Server-Sent Events, until it ends.",
                    "description": "Each change is an `event: job` whose `data` is the JSON of `getJob` "
                                   "(the JobView schema); the stream ends after a final state (`done`, `failed`, "
                                   "`cancelled`), or when its time is up (connect again).",
                    "responses": {
                        "200": {"description": "The stream.", "content": {"text/event-stream": {
                            # One Server-Sent Event (as OpenAPI 3.2's itemSchema would say it).
                            "schema": {"type": "object", "properties": {
                                "event": {"const": "job"}, "id": {"type": "string", "pattern": "^[0-9]+$"},
                                "data": {"type": "string", "contentMediaType": "application/json",
                                         "contentSchema": ref("JobView")}}}}}},
                        "401": UNAUTHORIZED, "404": JOB_NOT_FOUND, "429": OVER_QUOTA,
                        "503": error("Too many live streams at once: poll `getJob` instead.", retry=True)}},
        },
        "/status/{job_id}/cancel": {
            "parameters": [job_id_parameter()],
            "post": {"operationId": "cancelJob", "tags": ["status"], "summary": "Cancel a job.",
                     "description": "Idempotent: cancelling a job that is cancelled already answers as the first "
                                    "cancel did (200, the cancelled job), so a client whose answer was lost can "
                                    "ask again.",
                     "responses": {"200": {**job_answer, "description": "The cancelled job (also when it was "
                                                                         "cancelled before)."},
                                   **owned_resource_errors(JOB_NOT_FOUND),
                                   "409": error("The job ended otherwise (done or failed): only an importing, "
                                                "uploaded or converting job can be cancelled.")}},
        },
    }


# functions/download/main.py `dead_links_to_the_page`: a browser shown the page that says why, not this JSON.
DEAD_LINK_TO_THE_PAGE = error(
    "A signed link that no longer works (changed, expired, its MP3 gone), opened in a browser (`Sec-Fetch-Mode: "
    "navigate` or `Accept: text/html`): sent to the web page, which says why; the body is the JSON error the link "
    "would otherwise get.",
    extra_headers={"Location": header("The web page: `<web page>/#link=invalid` (a changed link) or "
                                      "`#link=gone` (one that worked and no longer does).")})


def download_paths() -> dict[str, Any]:
    link_parameter = {"in": "query", "required": False, "description": "A signed link's (from the job's "
                                                                       "`audio.download_link`, or `chapters_link` for "
                                                                       "the chapters): no token needed."}
    mp3_headers = {"ETag": header("The MP3's SHA-256."), "Last-Modified": header("When the MP3 was stored."),
                   "Content-Disposition": header("`attachment` with a safe name."), "Accept-Ranges": header("`bytes`")}
    mp3 = {"description": "The MP3.", "headers": mp3_headers,
           "content": {"audio/mpeg": {"schema": {"contentMediaType": "audio/mpeg"}}}}
    download: dict[str, Any] = {
        "operationId": "downloadMp3", "tags": ["download"], "summary": "The MP3 of a finished job.",
        "security": [{"bearer": []}, {}],
        "parameters": [
            job_id_parameter(),
            {"name": "expires", **link_parameter, "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
            {"name": "key", **link_parameter, "schema": {"type": "string"}},
            {"name": "signature", **link_parameter, "schema": {"type": "string"}},
            {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "One range, `bytes=<first>-[<last>]` or `bytes=-<suffix>` (RFC 9110): 206; one that starts "
                            "past the MP3's end: 416; a suffix longer than the MP3: all of it. Another unit, "
                            "several ranges or a range that is not valid are ignored (200, the whole MP3)."},
            {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The ETag (strong) or Last-Modified the client holds: the Range applies only if it "
                            "is still current (a weak tag never is)."},
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "If-Modified-Since", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "If-Unmodified-Since", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": mp3,
            "206": {**mp3, "description": "The range asked for.",
                    "headers": {**mp3_headers, "Content-Range": header("`bytes <first>-<last>/<length>`")}},
            "303": DEAD_LINK_TO_THE_PAGE,
            "304": {"description": "Not modified (`If-None-Match`, or `If-Modified-Since`), whatever `Range` says.",
                    "headers": {"ETag": mp3_headers["ETag"]}},
            "401": UNAUTHORIZED,
            "403": error("The signed link was changed or is incomplete."),
            "404": JOB_NOT_FOUND,
            "409": error("The job has not finished: no MP3 yet."),
            "410": error("The MP3 (or the link) has expired."),
            "412": error("`If-Match` names another ETag, or `If-Unmodified-Since` is before the MP3 was stored."),
            "416": error("The one range starts past the MP3's end.",
                         extra_headers={"Content-Range": header("`bytes */<length>`")}),
            "503": UNAVAILABLE,
        }}
    return {
        "/download/{job_id}": {"get": download},
        "/download/zip": {"get": {
            "operationId": "downloadMp3sZip", "tags": ["download"],
            "summary": "Several finished jobs' MP3s as one ZIP, streamed as it is built.",
            "description": "Stored (not deflated) entries, each the MP3 byte for byte, named after the video "
                           "(` (2)`… for repeats), in the order asked; sent chunked (its length is not known before "
                           "it is built). All or nothing: each job that is not the caller's (answered as missing), "
                           "not done or expired is named in the 422, and no ZIP is sent. An MP3 that expires while "
                           "the ZIP streams ends it early (the ZIP is then incomplete: ask again).",
            "parameters": [{"name": "jobs", "in": "query", "required": True,
                            "description": f"1 to {MAX_ZIP_JOBS} job ids, comma-separated.",
                            "schema": {"type": "string", "minLength": 1}}],
            "responses": {
                "200": {"description": "The ZIP.",
                        "headers": {"Content-Disposition": header("`attachment; filename=\"vid2mp3-<n>-mp3s.zip\"`")},
                        "content": {"application/zip": {"schema": {"contentMediaType": "application/zip"}}}},
                "401": UNAUTHORIZED,
                "422": error("No jobs named, or more than the limit (`invalid_jobs`); or jobs without an MP3 to give "
                             "(`unavailable_jobs`: `jobs` names each with its reason)."),
                "503": UNAVAILABLE,
            }}},
        "/download/{job_id}/chapters.json": {"get": {
            "operationId": "downloadChapters", "tags": ["download"],
            "summary": "The chapters of a finished job's MP3, as a Podcasting 2.0 JSON chapters document.",
            "description": "On the MP3's own timeline (a trim moves and cuts the video's chapters), as the job's "
                           "`chapters` lists them; the owner's token or a signed link made for this path "
                           "(`audio.chapters_link`), and kept as long as the MP3.",
            "security": [{"bearer": []}, {}],
            "parameters": [*download["parameters"][:4],
                           {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                           {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "`{\"version\": \"1.2.0\", \"chapters\": [{\"startTime\", \"endTime\", "
                                       "\"title\"}, …]}`, times in seconds.",
                        "headers": {"ETag": header("The document's SHA-256.")},
                        "content": {"application/json+chapters": {"schema": PODCAST_CHAPTERS}}},
                "303": DEAD_LINK_TO_THE_PAGE,
                "304": {"description": "Not modified (`If-None-Match`).", "headers": {"ETag": header("As for 200.")}},
                "401": UNAUTHORIZED,
                "403": error("The signed link was changed, is incomplete or was made for another path."),
                "404": error("No such job (someone else's job answers the same), or its MP3 has no chapters "
                             "(`no_chapters`)."),
                "409": error("The job has not finished: no MP3 yet."),
                "410": error("The MP3 (or the link) has expired."),
                "412": error("`If-Match` names another ETag."),
                "503": UNAVAILABLE,
            }}},
        "/download/{job_id}/cover.jpg": {"get": {
            "operationId": "downloadCover", "tags": ["download"],
            "summary": "The cover in a finished job's MP3 (its ID3 tag's picture): the feed's episode image.",
            "security": [{"bearer": []}, {}],
            "parameters": [*download["parameters"][:4],
                           {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The picture (a JPEG).", "headers": {"ETag": header("The picture's SHA-256.")},
                        "content": {"image/jpeg": {"schema": {"contentMediaType": "image/jpeg"}}}},
                "303": DEAD_LINK_TO_THE_PAGE,
                "304": {"description": "Not modified (`If-None-Match`).", "headers": {"ETag": header("As for 200.")}},
                "401": UNAUTHORIZED,
                "403": error("The signed link was changed, is incomplete or was made for another path."),
                "404": error("No such job (someone else's job answers the same), or its MP3 has no cover "
                             "(`no_cover`)."),
                "409": error("The job has not finished: no MP3 yet."),
                "410": error("The MP3 (or the link) has expired."),
                "412": error("`If-Match` names another ETag."),
                "503": UNAVAILABLE,
            }}},
        "/download/{job_id}/chapters/{number}.mp3": {"get": {
            **download, "operationId": "downloadChapterFile",
            "summary": "One chapter file of a finished job (`split=chapters`), served as the MP3 is.",
            "description": "Numbered from 1 as the job's `audio.chapter_files` lists them; the owner's token or a "
                           "signed link made for this path (the file's `download_link`); kept as long as the MP3.",
            "parameters": [download["parameters"][0],
                           {"name": "number", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}},
                           *download["parameters"][1:]],
            "responses": {**download["responses"],
                          "404": error("No such job (someone else's job answers the same), or no chapter file of "
                                       "that number (`no_chapter_file`).")}}},
        "/download/{job_id}/chapters.zip": {"get": {
            "operationId": "downloadChapterFilesZip", "tags": ["download"],
            "summary": "All the chapter files of a finished job as one ZIP, streamed as it is built.",
            "description": "Stored (not deflated) entries, each a chapter file byte for byte, named `<video> - <nn> "
                           "<title>.mp3` in chapter order; the owner's token or a signed link made for this path "
                           "(`audio.chapter_files_zip_link`).",
            "security": [{"bearer": []}, {}],
            "parameters": download["parameters"][:4],
            "responses": {
                "200": {"description": "The ZIP.",
                        "headers": {"Content-Disposition": header("`attachment; filename=\"<video> - chapters.zip\"`")},
                        "content": {"application/zip": {"schema": {"contentMediaType": "application/zip"}}}},
                "303": DEAD_LINK_TO_THE_PAGE,
                "401": UNAUTHORIZED,
                "403": error("The signed link was changed, is incomplete or was made for another path."),
                "404": error("No such job (someone else's job answers the same), or it has no chapter files "
                             "(`no_chapter_files`)."),
                "409": error("The job has not finished: no MP3 yet."),
                "410": error("The MP3 (or the link) has expired."),
                "503": UNAVAILABLE,
            }}},
        **feed_paths()}


def feed_paths() -> dict[str, Any]:
    """The private podcast feed (functions/download/feed.py, accounts/feeds.py)."""
    shown = {"200": {"description": "The feed's address.", "content": json_content(ref("FeedView"))},
             "401": UNAUTHORIZED, "503": UNAVAILABLE}
    return {
        "/download/feed": {"get": {
            "operationId": "getFeed", "tags": ["download"], "summary": "Your private podcast feed's address.",
            "description": "Made on demand, and shown again whenever asked. It ends with the account and with a "
                           "password change (ask again for the new one); a login's token only.",
            "responses": shown}},
        "/download/feed/rotate": {"post": {
            "operationId": "rotateFeed", "tags": ["download"], "summary": "A new feed address.",
            "description": "The old address answers 404 from this moment on.", "responses": shown}},
        "/download/feeds/{address}": {"get": {
            "operationId": "getPodcastFeed", "tags": ["download"], "security": [],
            "summary": "The private podcast feed: RSS 2.0 with the iTunes and Podcasting 2.0 namespaces.",
            "description": "One item per finished job whose MP3 is kept (unless uploaded with `feed=false`), newest "
                           "first: its enclosure a signed link valid as long as the MP3, its chapters "
                           "(`podcast:chapters`) and its cover (`itunes:image`) where it has them. The address "
                           "is the credential: no token.",
            "parameters": [
                {"name": "address", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-f]{80}$"}},
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "If-Modified-Since", "in": "header", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The feed.",
                        "headers": {"ETag": header("The document's SHA-256."),
                                    "Last-Modified": header("The newest MP3's finishing time, or the address's.")},
                        "content": {"application/rss+xml": {"schema": {"type": "string"}}}},
                "304": {"description": "Not modified (`If-None-Match`, or `If-Modified-Since`).",
                        "headers": {"ETag": header("As for 200.")}},
                "404": error("No such feed: never made, rotated away, or its account deleted or its password "
                             "changed."),
                "412": error("`If-Match` names another ETag."),
                "503": UNAVAILABLE}}},
    }


# The Podcasting 2.0 JSON chapters document (podcast-namespace `chapters/jsonChapters.md`), as far as vid2mp3 fills
# it in.
PODCAST_CHAPTERS = {"type": "object", "required": ["version", "chapters"], "properties": {
    "version": {"const": "1.2.0"},
    "chapters": {"type": "array", "items": {"type": "object", "required": ["startTime", "title"], "properties": {
        "startTime": {"type": "number", "minimum": 0}, "endTime": {"type": "number", "exclusiveMinimum": 0},
        "title": {"type": "string"}}}}}}


def webhooks_paths() -> dict[str, Any]:
    endpoint_id = {"name": "endpoint_id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": ENDPOINT_ID_PATTERN}}
    endpoint_not_found = error("No such endpoint; someone else's answers the same.")
    links = {
        "GetEndpoint": link("getWebhookEndpoint", "Look at it.", endpoint_id="$response.body#/id"),
        "RotateSecret": link("rotateWebhookSecret", "Rotate its secret.", endpoint_id="$response.body#/id"),
        "DeleteEndpoint": link("deleteWebhookEndpoint", "Remove it.", endpoint_id="$response.body#/id"),
    }
    return {
        "/webhooks/": {
            "get": {"operationId": "listWebhookEndpoints", "tags": ["webhooks"], "summary": "Your endpoints.",
                    "responses": {"200": {"description": "The list.", "content": json_content(ref("EndpointList"))},
                                  "401": UNAUTHORIZED, "503": UNAVAILABLE}},
            "post": {"operationId": "registerWebhookEndpoint", "tags": ["webhooks"],
                     "summary": "Register an endpoint: job events POSTed to it, signed (Standard Webhooks).",
                     "requestBody": {"required": True, "content": json_content(ref("EndpointRequest"))},
                     "responses": {
                         "201": {"description": "Registered; its secret is shown only now.",
                                 "headers": {"Location": header("The endpoint's id: its URL, relative to this one.")},
                                 "content": json_content(ref("EndpointWithSecret")), "links": links},
                         "401": UNAUTHORIZED,
                         **JSON_BODY_ERRORS,
                         "409": error("The account has as many endpoints as it may."),
                         "422": error("A bad URL (not https, a private address) or event types."),
                         "503": UNAVAILABLE}},
        },
        "/webhooks/{endpoint_id}": {
            "parameters": [endpoint_id],
            "get": {"operationId": "getWebhookEndpoint", "tags": ["webhooks"],
                    "summary": "An endpoint with its recent deliveries.",
                    "responses": {"200": {"description": "The endpoint.",
                                          "content": json_content(ref("EndpointWithDeliveries"))},
                                  **owned_resource_errors(endpoint_not_found)}},
            "delete": {"operationId": "deleteWebhookEndpoint", "tags": ["webhooks"], "summary": "Remove it.",
                       "responses": {"204": {"description": "Removed."},
                                     **owned_resource_errors(endpoint_not_found)}},
        },
        "/webhooks/{endpoint_id}/rotate-secret": {
            "parameters": [endpoint_id],
            "post": {"operationId": "rotateWebhookSecret", "tags": ["webhooks"],
                     "summary": "A new secret; the old one keeps signing beside it for a day.",
                     "responses": {"200": {"description": "The endpoint with its new secret.",
                                           "content": json_content(ref("RotatedEndpoint"))},
                                   **owned_resource_errors(endpoint_not_found)}},
        },
    }


# What an API key must have to call each operation (endpoints/http.py: each route's `scope`); the others take a
# login's token only.
OPERATION_SCOPES = {
    "uploadVideo": "convert", "tusCreate": "convert", "tusOffset": "convert", "tusAppend": "convert",
    "tusTerminate": "convert", "cancelJob": "convert", "listJobs": "read", "getJob": "read",
    "followJobEvents": "read", "downloadMp3": "read", "downloadMp3sZip": "read", "downloadChapters": "read",
    "downloadCover": "read",
    "deleteJob": "delete", "listWebhookEndpoints": "webhooks",
    "registerWebhookEndpoint": "webhooks", "getWebhookEndpoint": "webhooks", "deleteWebhookEndpoint": "webhooks",
    "rotateWebhookSecret": "webhooks",
}
INSUFFICIENT_SCOPE = error("An API key without the scope this operation needs (named in the message and the "
                           "challenge), or a key where only a login's token will do.")


def with_scopes(item: dict[str, Any]) -> dict[str, Any]:
    """Each authenticated operation of a path item: the token, or an API key with the operation's scope."""
    for operation in item.values():
        if not isinstance(operation, dict) or "operationId" not in operation or operation.get("security") == []:
            continue
        scope = OPERATION_SCOPES.get(operation["operationId"])
        anonymous: list[dict[str, list[str]]] = [{}] if {} in operation.get("security", []) else []
        operation["security"] = [{"bearer": []}, *([{"apiKey": [scope]}] if scope else []), *anonymous]
        operation["responses"].setdefault("403", INSUFFICIENT_SCOPE)
    return item


PATHS_BY_FUNCTION = {"auth": auth_paths, "upload": upload_paths, "status": status_paths,
                     "download": download_paths, "webhooks": webhooks_paths}


def server(function: str, url: str) -> dict[str, Any]:
    variable = f"{function}Url"
    return {"url": f"{{{variable}}}", "description": f"The {function} function.",
            "variables": {variable: {"default": url.rstrip("/"),
                                     "description": f"The {function} function's public URL."}}}


def openapi_document(urls: Mapping[str, str]) -> dict[str, Any]:
    """The document, each function's server defaulting to `urls[function]` (its public URL)."""
    schemas, _ = component_schemas()
    paths: dict[str, Any] = {}
    for function in PUBLIC_FUNCTIONS:
        for path, item in PATHS_BY_FUNCTION[function]().items():
            paths[path] = {"servers": [server(function, urls[function])], **with_scopes(item)}
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "vid2mp3",
            "version": "1",
            "summary": "Upload a video, get an MP3.",
            "description": "vid2mp3's public HTTP functions. Each has a URL of its own (see each path's server); "
                           "every path here starts with its function's name, which each function also answers "
                           "under. Get a token from `logIn`, send it as `Authorization: Bearer <token>`. Every "
                           "error answers `{\"error\": code, \"message\": words}` (a 422 of bad options adds "
                           "`fields`), the server's own refusals included: 400 for a malformed request, 408 when "
                           "the headers take over 10 s or the body pauses over 20 s, 414 for a request line over "
                           "8190 bytes, 431 for a header field over 8190 bytes. HEAD answers wherever GET does. "
                           "The events behind the jobs: `asyncapi.json` beside this document.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name} for name in (*PUBLIC_FUNCTIONS, "tus")],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                           "description": "The `access_token` of `logIn` (EdDSA; keys at "
                                                          "`getJwks`)."},
                                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "v2m_ API key",
                                           "description": "An API key of `createKey`, sent as a bearer token; "
                                                          "each operation names the scope it needs."}},
        },
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Print the OpenAPI document.")
    parser.add_argument("--urls", type=json.loads, default=LOCAL_URLS,
                        help='the functions\' URLs as JSON: {"auth": "https://...", ...}')
    print(json.dumps(openapi_document(parser.parse_args().urls), indent=2))


if __name__ == "__main__":
    main()
