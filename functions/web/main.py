"""web (HTTP): serves the one-page web app (static/index.html, app.js, style.css) and `config.json`, which names
the public function URLs the page calls straight from the browser: auth, upload, status and download; and
`asyncapi.json`, the AsyncAPI 3.0 document of the broker's events (events/asyncapi.py), and `openapi.json`, the
OpenAPI 3.1 document of the public HTTP functions (functions/web/openapi.py), for integrators. No build step; one
third-party script, tus-js-client (the page's resumable uploads), served from this origin at the version pinned in
stack/node/package.json. A strict Content-Security-Policy lets the page talk to those four origins only."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import flask
import functions_framework

from events.asyncapi import asyncapi_document
from functions.shared.http import HttpError, answer_errors, framework_errors_in_json, json_response, method_not_allowed
from functions.shared.settings import WebSettings, load_settings
from functions.web.openapi import openapi_document

settings = load_settings(WebSettings)
framework_errors_in_json()
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
    "Cache-Control": "no-cache",
}


@functions_framework.http
@answer_errors
def web(request: flask.Request) -> flask.Response:
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed("GET, HEAD", "the web page is read-only")
    if request.path == "/config.json":
        return json_response(API, headers=SECURITY_HEADERS)
    if request.path == "/asyncapi.json":
        return json_response(EVENTS_DOCUMENT, headers=SECURITY_HEADERS)
    if request.path == "/openapi.json":
        return json_response(HTTP_DOCUMENT, headers=SECURITY_HEADERS)
    page = PAGES.get(request.path)
    if page is None:
        raise HttpError(404, "not_found", "no such page")
    name, mimetype = page
    return flask.Response(CONTENTS[name], mimetype=mimetype, headers=SECURITY_HEADERS)
