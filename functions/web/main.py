"""web (HTTP): serves the one-page web app (static/index.html, app.js, style.css) and `config.json`, which names
the public function URLs the page calls straight from the browser: auth, upload, status and download; and
`asyncapi.json`, the AsyncAPI 3.0 document of the broker's events (events/asyncapi.py), and `openapi.json`, the
OpenAPI 3.1 document of the public HTTP functions (api/openapi.py), for integrators. No build step; one
third-party script, tus-js-client (the page's resumable uploads), served from this origin at the version pinned in
stack/node/package.json. A strict Content-Security-Policy lets the page talk to those four origins only.

Every file and document is held in memory with an ETag from its content and, where it pays, its gzip form
(endpoints/conditional.py): `Cache-Control: no-cache` lets the browser keep them and revalidate on each load, a 304
of a few hundred bytes while they are unchanged (the files keep their names, so they cannot be `immutable`)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import flask
import functions_framework

from api.openapi import openapi_document
from endpoints.conditional import Document, cacheable
from endpoints.http import HttpFunction
from events.asyncapi import asyncapi_document
from runtime.answers import HttpError
from runtime.settings import WebSettings, load_settings

settings = load_settings(WebSettings)
STATIC = Path(__file__).with_name("static")
# tus-js-client as npm installed it, never a copy in the repository: into the image by functions/Dockerfile, or
# into the checkout's .local/node by stack/setup.sh (the local stack's).
TUS_JS_CLIENT = next((path for path in (
    STATIC / "vendor" / "tus.min.js",
    Path(__file__).resolve().parents[2] / ".local" / "node" / "node_modules" / "tus-js-client" / "dist" / "tus.min.js",
) if path.is_file()), None)
if TUS_JS_CLIENT is None:
    raise SystemExit("web: tus-js-client is not installed: run stack/setup.sh (or build the image from "
                     "functions/Dockerfile)")
PAGES = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/tus.min.js": ("tus.min.js", "text/javascript"),
}
# Read once: four small files, the same for every request.
CONTENTS = {name: (STATIC / name).read_bytes() for name, _ in PAGES.values() if name != "tus.min.js"}
CONTENTS["tus.min.js"] = TUS_JS_CLIENT.read_bytes()
FILES = {name: Document.of(CONTENTS[name], mimetype) for name, mimetype in PAGES.values()}
EVENTS_DOCUMENT = asyncapi_document()
API = {
    "auth_url": str(settings.public_auth_url).rstrip("/"),
    "upload_url": str(settings.public_upload_url).rstrip("/"),
    "status_url": str(settings.public_status_url).rstrip("/"),
    "download_url": str(settings.public_download_url).rstrip("/"),
}
HTTP_DOCUMENT = openapi_document({**{name.removesuffix("_url"): url for name, url in API.items()},
                                  "webhooks": str(settings.public_webhooks_url).rstrip("/")})


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self' " + " ".join(sorted({origin(url) for url in API.values()})),
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def json_document(content: object) -> Document:
    return Document.of(json.dumps(content, separators=(",", ":")).encode(), "application/json")


CONFIG, EVENTS, HTTP_API = json_document(API), json_document(EVENTS_DOCUMENT), json_document(HTTP_DOCUMENT)


http = HttpFunction(None, not_found=HttpError(404, "not_found", "no such page"))


@functions_framework.http
def web(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/config.json", "GET")
def config(request: flask.Request) -> flask.Response:
    return cacheable(request, CONFIG, headers=SECURITY_HEADERS)


@http.route("/asyncapi.json", "GET")
def events_document(request: flask.Request) -> flask.Response:
    return cacheable(request, EVENTS, headers=SECURITY_HEADERS)


@http.route("/openapi.json", "GET")
def http_document(request: flask.Request) -> flask.Response:
    return cacheable(request, HTTP_API, headers=SECURITY_HEADERS)


def page_of(name: str, mimetype: str) -> Callable[[flask.Request], flask.Response]:
    def serve(request: flask.Request) -> flask.Response:
        return cacheable(request, FILES[name], headers=SECURITY_HEADERS)

    return serve


for path, (name, mimetype) in PAGES.items():
    http.route(path, "GET")(page_of(name, mimetype))
