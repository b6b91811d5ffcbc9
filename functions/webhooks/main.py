"""webhooks (HTTP): a user's webhook endpoints. `POST /` `{"url", "events": [types]}` registers one (201, with
its signing secret, shown once); `GET /` lists them; `GET /<id>` shows one with its recent deliveries;
`POST /<id>/rotate-secret` issues a new secret (the old one keeps signing for a day); `DELETE /<id>` removes it.
The `delivery` function sends the events (functions/delivery/)."""

from __future__ import annotations

import flask
import functions_framework

from functions.shared import mongo
from functions.shared.http import (
    SetUpOnce,
    allow_cross_origin,
    also_under,
    answer_errors,
    authenticate,
    framework_errors_in_json,
    json_response,
    method_not_allowed,
)
from functions.shared.settings import WebhooksSettings, load_settings
from functions.shared.tokens import TokenVerifier
from functions.webhooks.registry import ENDPOINT_NOT_FOUND, Registry
from functions.webhooks.store import WebhookStore

settings = load_settings(WebhooksSettings)
framework_errors_in_json()
store = WebhookStore(mongo.database(settings))
indexes = SetUpOnce("the webhook indexes", store.ensure_indexes).at_start()
verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
registry = Registry(store, allow_loopback=settings.webhook_allow_loopback,
                    max_endpoints=settings.webhook_max_endpoints)


@functions_framework.http
@also_under("webhooks")
@allow_cross_origin(settings.allowed_origins())
@answer_errors
def webhooks(request: flask.Request) -> flask.Response:
    owner = authenticate(request, verifier).subject
    indexes()
    parts = [part for part in request.path.split("/") if part]
    route = (request.method, *parts[1:])
    if not parts:
        if request.method == "POST":
            return json_response(registry.register(owner, request.get_json(silent=True)), 201)
        if request.method == "GET":
            return json_response(registry.list(owner))
        raise method_not_allowed("GET, POST", "GET lists your endpoints; POST registers one")
    elif route == ("GET",):
        return json_response(registry.show(owner, parts[0]))
    elif route == ("DELETE",):
        registry.delete(owner, parts[0])
        return flask.Response(status=204)
    elif route == ("POST", "rotate-secret"):
        return json_response(registry.rotate_secret(owner, parts[0]))
    elif len(parts) == 1:
        raise method_not_allowed("GET, DELETE", f"{request.method} is not allowed on an endpoint")
    elif parts[1:] == ["rotate-secret"]:
        raise method_not_allowed("POST", "POST rotates the secret")
    raise ENDPOINT_NOT_FOUND
