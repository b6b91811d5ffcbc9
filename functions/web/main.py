"""web (HTTP): serves the one-page web app (static/index.html, app.js, style.css, favicon.svg) and `config.json`,
which names the public function URLs the page calls straight from the browser: auth, upload, status and download; and
`asyncapi.json`, the AsyncAPI 3.0 document of the broker's events (events/asyncapi.py), and `openapi.json`, the
OpenAPI 3.1 document of the public HTTP functions (api/openapi.py), for integrators. No build step; two
third-party scripts, served from this origin at the versions pinned in stack/node/package.json: tus-js-client (the
page's resumable uploads) and mediabunny (extract.js copies a video's audio tracks with it in the browser; the page
loads both only once a file is chosen). A strict Content-Security-Policy lets the page talk to those four origins
only, and play only the files chosen in it (the cover frame is drawn from a `<video>` of the file).

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
NODE_MODULES = Path(__file__).resolve().parents[2] / ".local" / "node" / "node_modules"


def vendored(name: str, package: str, dist_file: str) -> Path:
    """A third-party script as npm installed it, never a copy in the repository: into the image by
    functions/Dockerfile (static/vendor/), or into the checkout's .local/node by stack/setup.sh (the local stack's)."""
    for path in (STATIC / "vendor" / name, NODE_MODULES / package / dist_file):
        if path.is_file():
            return path
    raise SystemExit(f"web: {package} is not installed: run stack/setup.sh (or build the image from "
                     "functions/Dockerfile)")


VENDORED = {
    "tus.min.js": vendored("tus.min.js", "tus-js-client", "dist/tus.min.js"),
    # One ES module with no imports of its own (its single-file bundle); extract.js imports it by this name.
    "mediabunny.min.mjs": vendored("mediabunny.min.mjs", "mediabunny", "dist/bundles/mediabunny.min.mjs"),
}
PAGES = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/extract.js": ("extract.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/tus.min.js": ("tus.min.js", "text/javascript"),
    "/mediabunny.min.mjs": ("mediabunny.min.mjs", "text/javascript"),
}
# Read once: a few files, the same for every request.
CONTENTS = {name: (VENDORED[name] if name in VENDORED else STATIC / name).read_bytes() for name, _ in PAGES.values()}
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
    # media-src blob: the cover frame is drawn from a <video> playing the chosen file (an object URL of it).
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "media-src blob:",
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
