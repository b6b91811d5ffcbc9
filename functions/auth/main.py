"""auth (HTTP): `POST /signup` and `POST /login` with `{"email", "password"}` against MySQL; login answers an
EdDSA JWT. `GET /.well-known/jwks.json` publishes the public keys other functions verify tokens with.
`DELETE /account` with the account's token and `{"password"}` deletes the account, all its jobs and their media,
its webhook endpoints and their deliveries, and its quota usage."""

from __future__ import annotations

import logging
from typing import Any

import flask
import functions_framework
from pydantic import ValidationError

from accounts.signup_limits import SignupLimits, SignupsThrottled, client_address
from accounts.store import (
    AccessToken,
    AccountExists,
    Accounts,
    Credentials,
    LoginRefused,
    LoginThrottled,
    PasswordConfirmation,
    SignedUp,
)
from accounts.tokens import TokenIssuer
from endpoints.http import HttpFunction, SetUpOnce
from events import EventEmitter
from jobs.cancellation import Cancellation
from jobs.erasure import Erasure
from jobs.quotas import forget_usage
from jobs.records import Jobs
from runtime.answers import HttpError, json_response
from runtime.settings import AuthSettings, load_settings
from storage import mongo
from webhooks.store import WebhookStore

log = logging.getLogger(__name__)
settings = load_settings(AuthSettings)
accounts = Accounts(settings.mysql_url.get_secret_value(), max_failures=settings.login_max_failures,
                    failure_window_seconds=settings.login_failure_window_seconds)
signup_limits = SignupLimits(settings.mysql_url.get_secret_value(), per_hour=settings.signups_per_address_per_hour)
schema = SetUpOnce("the accounts schema", accounts.apply_schema).at_start()
issuer = TokenIssuer(settings.jwt_private_key.get_secret_value(), issuer=settings.jwt_issuer,
                     audience=settings.jwt_audience, ttl_seconds=settings.jwt_ttl_seconds,
                     key_id=settings.jwt_key_id)
database = mongo.database(settings)
jobs = Jobs(database)
webhooks = WebhookStore(database)
erasure = Erasure(database, jobs, Cancellation(database, jobs, EventEmitter(str(settings.k_sink), "auth")))
http = HttpFunction.public("auth", settings, not_found=HttpError(
    404, "not_found", "try POST /signup, POST /login, DELETE /account or GET /.well-known/jwks.json"))


@functions_framework.http
def auth(request: flask.Request) -> Any:
    return http(request)


def credentials_from(request: flask.Request) -> Credentials:
    body = request.get_json(silent=True)
    try:
        return Credentials.model_validate(body if isinstance(body, dict) else {})
    except ValidationError as error:
        # Every problem at once, without echoing the submitted password back.
        problems = [f"{'.'.join(map(str, item['loc'])) or 'body'}: {item['msg']}" for item in error.errors()]
        raise HttpError(422, "invalid_credentials_format", "; ".join(problems)) from None


@http.route("/.well-known/jwks.json", "GET")
def jwks(request: flask.Request) -> flask.Response:
    return json_response(issuer.jwks(), headers={"Cache-Control": "public, max-age=300"})


@http.route("/signup", "POST")
def sign_up(request: flask.Request) -> flask.Response:
    schema()
    credentials = credentials_from(request)
    try:
        signup_limits.take(client_address(request, settings.trusted_proxy_hops))
    except SignupsThrottled as throttled:
        raise HttpError(429, "too_many_signups", f"signups_per_address_per_hour: {throttled}; try again later",
                        {"Retry-After": str(throttled.retry_after_seconds)}) from None
    try:
        account = accounts.sign_up(credentials)
    except AccountExists:
        raise HttpError(409, "account_exists", "an account with this email address exists; log in") from None
    return json_response(SignedUp(account_id=account.account_id, email=account.email).model_dump(), 201)


@http.route("/login", "POST")
def log_in(request: flask.Request) -> flask.Response:
    schema()
    try:
        account = accounts.log_in(credentials_from(request))
    except LoginRefused:
        raise HttpError(401, "login_refused", "wrong email address or password") from None
    except LoginThrottled as throttled:
        raise HttpError(429, "too_many_attempts", "too many failed logins; try again later",
                        {"Retry-After": str(throttled.retry_after_seconds)}) from None
    token = issuer.issue(account.account_id, account.email)
    return json_response(AccessToken(access_token=token, expires_in=issuer.ttl_seconds).model_dump())


@http.route("/account", "DELETE")
def delete_account(request: flask.Request) -> flask.Response:
    """The account's jobs first (media and records, running ones cancelled), then the account: should this stop
    midway, the owner can still log in and ask again."""
    identity = http.identity(request)
    body = request.get_json(silent=True)
    try:
        password = PasswordConfirmation.model_validate(body if isinstance(body, dict) else {}).password
    except ValidationError:
        raise HttpError(422, "password_required", 'confirm with the account\'s password: {"password": "..."}') \
            from None
    schema()
    try:
        accounts.confirm(identity.subject, identity.email, password)
    except LoginRefused:
        raise HttpError(403, "wrong_password", "the password does not match this account") from None
    except LoginThrottled as throttled:
        raise HttpError(429, "too_many_attempts", "too many failed logins; try again later",
                        {"Retry-After": str(throttled.retry_after_seconds)}) from None
    jobs_deleted = erasure.erase_owner(identity.subject)
    webhooks.delete_owned(identity.subject)
    forget_usage(database, identity.subject)
    accounts.delete(identity.subject, identity.email)
    log.info("account %s deleted with its %d jobs", identity.subject, jobs_deleted)
    return flask.Response(status=204)
