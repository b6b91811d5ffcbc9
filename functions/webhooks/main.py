"""webhooks (HTTP): a user's webhook endpoints. `POST /` `{"url", "events": [types]}` registers one (201, with
its signing secret, shown once); `GET /` lists them; `GET /<id>` shows one with its recent deliveries;
`POST /<id>/rotate-secret` issues a new secret (the old one keeps signing for a day); `DELETE /<id>` removes it.
The `delivery` function sends the events (functions/delivery/)."""

from __future__ import annotations

import flask
import functions_framework

from endpoints.http import HttpFunction, SetUpOnce, read_json
from runtime.answers import json_response
from runtime.settings import WebhooksSettings, load_settings
from storage import mongo
from webhooks.registry import ENDPOINT_NOT_FOUND, Registry
from webhooks.store import WebhookStore

settings = load_settings(WebhooksSettings)
store = WebhookStore(mongo.database(settings))
indexes = SetUpOnce("the webhook indexes", store.ensure_indexes).at_start()
registry = Registry(store, allow_loopback=settings.webhook_allow_loopback,
                    max_endpoints=settings.webhook_max_endpoints)
http = HttpFunction.public("webhooks", settings, not_found=ENDPOINT_NOT_FOUND, authenticate_first=True,
                           before=indexes)


@functions_framework.http
def webhooks(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/", "POST", scope="webhooks")
def register(request: flask.Request) -> flask.Response:
    registered = registry.register(http.identity(request).subject, read_json(request))
    # Relative: the endpoint answers under this function's URL and under /webhooks alike.
    return json_response(registered, 201, {"Location": str(registered["id"])})


@http.route("/", "GET", scope="webhooks")
def list_endpoints(request: flask.Request) -> flask.Response:
    return json_response(registry.list(http.identity(request).subject))


@http.route("/<endpoint_id>", "GET", scope="webhooks")
def show(request: flask.Request, endpoint_id: str) -> flask.Response:
    return json_response(registry.show(http.identity(request).subject, endpoint_id))


@http.route("/<endpoint_id>", "DELETE", scope="webhooks")
def delete(request: flask.Request, endpoint_id: str) -> flask.Response:
    registry.delete(http.identity(request).subject, endpoint_id)
    return flask.Response(status=204)


@http.route("/<endpoint_id>/rotate-secret", "POST", scope="webhooks")
def rotate_secret(request: flask.Request, endpoint_id: str) -> flask.Response:
    return json_response(registry.rotate_secret(http.identity(request).subject, endpoint_id))
