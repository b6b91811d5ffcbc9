"""What every HTTP function does around its handlers, written once (`HttpFunction`): its paths as a routing table,
answered under its own name too; the bearer-token check; CORS for the web page that calls the public functions from
its own origin; every refusal, the framework's own included, as the JSON error body, and a data store that does not
answer as 503."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Collection
from typing import IO, Any

import flask
import pymongo.errors
import pymysql
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule

from accounts.credentials import CredentialGenerations
from accounts.keys import ApiKeys, looks_like_a_key
from accounts.tokens import Identity, InvalidToken, TokenVerifier, bearer_token
from events.catalog import JOB_ID_PATTERN
from runtime.answers import NOT_FOUND, HttpError, errors_in_json, method_not_allowed
from runtime.settings import CorsSettings, TokenVerifierSettings

log = logging.getLogger(__name__)


def framework_errors_in_json() -> None:
    """Called at a function's import: the framework's own refusals (a path its routing does not take, such as one
    holding a newline) and crashes answer with the JSON error body too, not werkzeug's HTML page (found by
    schemathesis). runtime/server.py does the same for every function it serves."""
    # On the app whose context runs main.py (functions-framework's `errorhandler` names the app created last in the
    # process, another one when a process makes several: the tests do).
    if flask.has_app_context():
        errors_in_json(flask.current_app)


BEARER_CHALLENGE = 'Bearer realm="vid2mp3"'


def authenticate(request: flask.Request, verifier: TokenVerifier,
                 generations: CredentialGenerations | None = None, keys: ApiKeys | None = None) -> Identity:
    """The caller, by their bearer token or API key (when `keys` is given), whose credential generation is still
    the account's (when `generations` is given: an account deleted, or whose password changed, has none or
    another); 401 with RFC 6750's challenge otherwise: without a credential, the bare challenge (§3.1: no error code
    when no credentials were sent); with one that is not valid, `error="invalid_token"`."""
    authorization = request.headers.get("Authorization")
    try:
        credential = bearer_token(authorization)
        if keys is not None and looks_like_a_key(credential):
            key = keys.verify(credential)
            if key is None:
                raise InvalidToken("the API key is unknown, revoked or expired")
            identity = Identity(subject=key.owner_id, email="", generation=key.generation, scopes=key.scopes,
                                key_id=key.id)
        else:
            identity = verifier.verify(credential)
        if generations is not None and \
                generations.current(identity.subject, at_least=identity.generation) != identity.generation:
            raise InvalidToken("the account was deleted or its password changed since the credential was issued")
        return identity
    except InvalidToken as error:
        challenge = BEARER_CHALLENGE
        if (authorization or "").partition(" ")[0].lower() == "bearer":
            challenge += ', error="invalid_token", error_description="the token is malformed, expired or not ours"'
        raise HttpError(401, "unauthorized", f"a valid bearer token is required ({error})",
                        {"WWW-Authenticate": challenge}) from None


def check_scope(identity: Identity, scope: str | None) -> None:
    """403 with RFC 6750's `insufficient_scope` unless the caller may act in `scope`: a token may do everything,
    an API key what its scopes name, and nothing that names no scope (the account and its keys: a login only)."""
    if identity.scopes is None or (scope is not None and scope in identity.scopes):
        return
    if scope is None:
        raise HttpError(403, "insufficient_scope", "API keys cannot do this: log in for a token",
                        {"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="insufficient_scope"'})
    raise HttpError(403, "insufficient_scope", f"this API key lacks the scope `{scope}`",
                    {"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="insufficient_scope", scope="{scope}"'})


# A JSON request body (credentials, a webhook registration) is small: more is refused before it is parsed, and so
# is nesting deeper than any of them needs (Python's parser would recurse into 5,000 levels and crash).
MAX_JSON_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32


def read_json(request: flask.Request, max_bytes: int = MAX_JSON_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body, or None when it is not `application/json` (the caller's validation then names what
    is missing). Refused with the JSON error body, its rest left unread: over `max_bytes` by its `Content-Length`
    (before reading) or while reading (a body without a length), 413; nested deeper than `max_depth`, or not JSON,
    400."""
    if not request.is_json:
        return None
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise body_refused(413, "body_too_large", f"a JSON body may have at most {max_bytes} bytes; this one "
                                                  f"declares {declared}")
    data = read_at_most(request.stream, max_bytes + 1)
    if len(data) > max_bytes:
        raise body_refused(413, "body_too_large", f"a JSON body may have at most {max_bytes} bytes")
    if json_depth(data) > max_depth:
        raise body_refused(400, "malformed_json", f"JSON nested more than {max_depth} deep")
    try:
        return json.loads(data)
    except ValueError as error:
        raise body_refused(400, "malformed_json", f"the body is not JSON ({error})") from None


def read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`, however many reads that takes (one read may answer fewer)."""
    parts, left = [], limit
    while left > 0:
        part = stream.read(min(left, 65536))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in `data`, brackets inside strings aside (counted before parsing: Python's
    parser recurses once per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def body_refused(status: int, code: str, message: str) -> HttpError:
    return HttpError(status, code, message, leaves_body_unread=True)


# What a data store that is down, restarting or unreachable raises.
STORE_ERRORS = (pymongo.errors.PyMongoError, pymysql.err.OperationalError, pymysql.err.InterfaceError)
STORE_UNAVAILABLE = HttpError(503, "unavailable", "a data store is not answering; try again shortly",
                              {"Retry-After": "5"})


def answer_errors(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
    """Decorator: turns HttpError raised by an HTTP handler into its JSON answer, and a data store that does not
    answer into 503 (retry later) rather than a crash's 500."""
    return answer_errors_with(default_answer)(handler)


class SetUpOnce:
    """Set-up a function needs from a data store (a schema, indexes). A scale-to-zero function may start while its
    store is restarting: it starts anyway, and the set-up runs again before each request until it has succeeded
    once (until then requests answer 503 through `answer_errors`)."""

    def __init__(self, what: str, action: Callable[[], None]) -> None:
        self.what = what
        self._action = action
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if not self._done:
                self._action()
                self._done = True

    def at_start(self) -> SetUpOnce:
        try:
            self()
        except STORE_ERRORS as error:
            log.warning("%s: not set up at start (%s); trying again at the next request", self.what,
                        type(error).__name__)
        return self


# What the web page sends (a bearer token, JSON or a raw video, byte ranges, tus resumable uploads) and what it
# must be able to read.
CORS_ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_ALLOWED_HEADERS = ("Authorization, Content-Type, Range, If-None-Match, Tus-Resumable, Upload-Length, "
                        "Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat, "
                        "X-HTTP-Method-Override")
CORS_EXPOSED_HEADERS = ("Content-Disposition, Content-Length, Content-Range, ETag, Retry-After, Location, "
                        "Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, Tus-Resumable, Tus-Version, "
                        "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")
CORS_PREFLIGHT_MAX_AGE_SECONDS = 600


def allow_cross_origin(allowed_origins: Collection[str]) -> Callable[[Callable[[flask.Request], Any]],
                                                                     Callable[[flask.Request], Any]]:
    """Decorator, outermost on a public HTTP function: answers CORS preflights itself and lets the listed origins
    read every answer, errors included. No cookies are involved (tokens travel in `Authorization`), so credentials
    are never allowed; other origins get no CORS headers and the browser keeps the answer from them."""

    def decorate(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> Any:
            origin = request.headers.get("Origin")
            allowed = origin is not None and origin in allowed_origins
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                if not allowed:
                    response = HttpError(403, "origin_not_allowed", "this origin may not call vid2mp3").response()
                else:
                    response = flask.Response(status=204, headers={
                        "Access-Control-Allow-Methods": CORS_ALLOWED_METHODS,
                        "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS,
                        "Access-Control-Max-Age": str(CORS_PREFLIGHT_MAX_AGE_SECONDS),
                    })
            else:
                response = flask.make_response(handler(request))
            without_content_type_if_bodiless(response)
            if allowed:
                response.headers["Access-Control-Allow-Origin"] = str(origin)
                response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
            response.vary.add("Origin")
            return response

        return wrapper

    return decorate


def without_content_type_if_bodiless(response: flask.Response) -> flask.Response:
    """A 204 or 304 has no content, so no Content-Type (Flask gives every answer one, `text/html`)."""
    if response.status_code in (204, 304):
        response.headers.pop("Content-Type", None)
    return response


def also_under(name: str) -> Callable[[Callable[[flask.Request], Any]], Callable[[flask.Request], Any]]:
    """Decorator: the function answers each of its paths under `/<name>` too (`/status/<job id>` as `/<job id>`).
    Every function has a URL of its own, so their paths overlap (`GET /` lists jobs on status and endpoints on
    webhooks); the OpenAPI document (api/openapi.py) names each path with its function's prefix, which
    keeps one document's paths apart, and lets a single gateway route by prefix."""
    prefix = f"/{name}"

    def decorate(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> Any:
            if request.path == prefix or request.path.startswith(prefix + "/"):
                request.path = request.path[len(prefix):] or "/"
            return handler(request)

        return wrapper

    return decorate


class JobIdConverter(BaseConverter):
    """`<job:job_id>` in a rule: a job id (events/catalog.py), so any other path segment answers not found."""

    regex = JOB_ID_PATTERN.strip("^$")


# The order `Allow` lists methods in (RFC 9110 leaves it free; one order reads better).
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
Handler = Callable[..., Any]


class HttpFunction:
    """One HTTP function's request handling. Its paths are a werkzeug routing table, each rule naming its handler
    (`@http.route("/<job_id>", "GET")`, called as `handler(request, job_id=...)`; a GET rule answers HEAD too). A
    path no rule matches answers `not_found`, a method its rule does not take 405 with `Allow`.

    With `authenticate_first` (every request, or those it returns True for), the caller's token is checked before
    routing, so a stranger learns nothing of the paths; `identity(request)` gives the caller to the handlers."""

    def __init__(self, name: str | None, *, verifier: TokenVerifier | None = None,
                 generations: CredentialGenerations | None = None, keys: ApiKeys | None = None,
                 allowed_origins: Collection[str] | None = None, not_found: HttpError = NOT_FOUND,
                 authenticate_first: bool | Callable[[flask.Request], bool] = False,
                 before: Callable[[], None] = lambda: None,
                 answer_error: Callable[[flask.Request, HttpError], flask.Response] | None = None) -> None:
        self.verifier = verifier
        self.generations = generations
        self.keys = keys
        self.not_found = not_found
        self.authenticate_first = authenticate_first
        self.before = before
        self.answer_error = answer_error or default_answer
        self.routes = Map(strict_slashes=False, merge_slashes=False, converters={"job": JobIdConverter})
        self.handlers: dict[str, Handler] = {}
        self.scopes: dict[str, str | None] = {}
        self.entry = answer_errors_with(self.answer_error)(self.dispatch)
        if allowed_origins is not None:
            self.entry = allow_cross_origin(allowed_origins)(self.entry)
        else:
            inner = self.entry
            self.entry = lambda request: without_content_type_if_bodiless(flask.make_response(inner(request)))
        if name is not None:
            self.entry = also_under(name)(self.entry)
        framework_errors_in_json()

    @classmethod
    def public(cls, name: str, settings: CorsSettings, **options: Any) -> HttpFunction:
        """A public function of the deployment: CORS from its settings, and where it verifies tokens, a verifier and
        the accounts' credential generations and API keys (`generations=`, `keys=`: those the function uses itself
        too)."""
        verifier, generations, keys = None, options.pop("generations", None), options.pop("keys", None)
        if isinstance(settings, TokenVerifierSettings):
            verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
            generations = generations or CredentialGenerations.from_settings(settings)
            keys = keys or ApiKeys.from_settings(settings)
        return cls(name, verifier=verifier, generations=generations, keys=keys,
                   allowed_origins=settings.allowed_origins(), **options)

    def route(self, rule: str, *methods: str, scope: str | None = None) -> Callable[[Handler], Handler]:
        """Registers the handler of `rule` for `methods` (none named: every method, the handler's to sort out). An
        API key may call it if it has `scope` (none: no key may, only a login's token)."""

        def register(handler: Handler) -> Handler:
            endpoint = f"{handler.__name__}:{rule}"
            self.routes.add(Rule(rule, endpoint=endpoint, methods=list(methods) or None))
            self.handlers[endpoint] = handler
            self.scopes[endpoint] = scope
            return handler

        return register

    def __call__(self, request: flask.Request) -> Any:
        return self.entry(request)

    def identity(self, request: flask.Request) -> Identity:
        """The caller, by their bearer token or API key (checked once per request); 401 without a valid one, 403
        for a key without the route's scope."""
        known = request.environ.get("vid2mp3.identity")
        if known is None:
            if self.verifier is None:
                raise RuntimeError("this function verifies no tokens")
            known = request.environ["vid2mp3.identity"] = authenticate(request, self.verifier, self.generations,
                                                                       self.keys)
        if "vid2mp3.scope" in request.environ:  # routed: the caller acts in the route's scope
            check_scope(known, request.environ["vid2mp3.scope"])
        return known

    def dispatch(self, request: flask.Request) -> Any:
        first = self.authenticate_first
        if first is True or (callable(first) and first(request)):
            self.identity(request)
        self.before()
        try:
            endpoint, arguments = self.routes.bind("", path_info=request.path).match(method=request.method)
        except MethodNotAllowed as refused:
            allowed = sorted(refused.valid_methods or (), key=METHOD_ORDER.index)
            raise method_not_allowed(", ".join(allowed), f"{request.method} is not allowed on {request.path}") \
                from None
        except NotFound:
            raise self.not_found from None
        request.environ["vid2mp3.scope"] = self.scopes[endpoint]
        if "vid2mp3.identity" in request.environ:
            self.identity(request)
        return self.handlers[endpoint](request, **arguments)


def default_answer(request: flask.Request, error: HttpError) -> flask.Response:
    return error.response_leaving_body_unread() if error.leaves_body_unread else error.response()


def answer_errors_with(answer: Callable[[flask.Request, HttpError], flask.Response]) \
        -> Callable[[Callable[[flask.Request], Any]], Callable[[flask.Request], Any]]:
    """`answer_errors`, with the function's own way of answering a refusal (the upload's leaves the body unread)."""

    def decorate(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> Any:
            try:
                return handler(request)
            except HttpError as error:
                return answer(request, error)
            except STORE_ERRORS:
                return answer(request, STORE_UNAVAILABLE)

        return wrapper

    return decorate
