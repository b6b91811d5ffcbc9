"""auth (HTTP): `POST /signup` and `POST /login` with `{"email", "password"}` against MySQL; login answers an
EdDSA JWT. A sign-up answers the same whether or not the address has an account (201, `Location: account`); the
owner of an existing one is told by email instead. `GET /account` answers the token's account.
`GET /.well-known/jwks.json` publishes the public keys other functions verify tokens with.
`POST /account/password` with `{"password", "new_password"}` changes the password and answers a new token: every
token issued before stops on every function within a cache's time (accounts/credentials.py).
`POST /keys` `{"name", "scopes", "expires_in_days"}` makes an API key (201, shown once), `GET /keys` lists them,
`DELETE /keys/<id>` revokes one (accounts/keys.py); a login's token only, never a key, manages them.
`DELETE /account` with the account's token and `{"password"}` deletes the account, all its jobs and their media,
its webhook endpoints and their deliveries, and its quota usage; its tokens, keys, feed and links stop likewise."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from typing import Any, TypeVar

import flask
import functions_framework
from pydantic import BaseModel, ValidationError

from accounts.credentials import CredentialGenerations
from accounts.feeds import Feeds
from accounts.keys import ApiKeys, KeyList, KeyRequest, TooManyKeys
from accounts.signup_limits import SignupLimits, SignupsThrottled, client_address
from accounts.store import (
    AccessToken,
    AccountExists,
    Accounts,
    AccountView,
    Credentials,
    LoginLimits,
    LoginRefused,
    LoginThrottled,
    PasswordChange,
    PasswordConfirmation,
    SignedUp,
)
from accounts.tokens import Identity, TokenIssuer
from endpoints.conditional import cacheable
from endpoints.http import HttpFunction, SetUpOnce, read_json
from events import EventEmitter
from jobs.cancellation import Cancellation
from jobs.erasure import Erasure
from jobs.quotas import forget_usage
from jobs.records import Jobs
from runtime.answers import HttpError, json_response
from runtime.mail import Mailer
from runtime.settings import AuthSettings, load_settings
from storage import mongo
from webhooks.store import WebhookStore

log = logging.getLogger(__name__)
Body = TypeVar("Body", bound=BaseModel)
settings = load_settings(AuthSettings)
accounts = Accounts(settings.mysql_url.get_secret_value(), login_limits=LoginLimits(
    per_account_and_address=settings.login_max_failures, per_address=settings.login_max_failures_per_address,
    per_account=settings.login_max_failures_per_account, window_seconds=settings.login_failure_window_seconds))
signup_limits = SignupLimits(settings.mysql_url.get_secret_value(), per_hour=settings.signups_per_address_per_hour)
schema = SetUpOnce("the accounts schema", accounts.apply_schema).at_start()
issuer = TokenIssuer(settings.jwt_private_key.get_secret_value(), issuer=settings.jwt_issuer,
                     audience=settings.jwt_audience, ttl_seconds=settings.jwt_ttl_seconds,
                     key_id=settings.jwt_key_id)
database = mongo.database(settings)
jobs = Jobs(database)
webhooks = WebhookStore(database)
erasure = Erasure(database, jobs, Cancellation(database, jobs, EventEmitter(str(settings.k_sink), "auth")))
generations = CredentialGenerations.from_settings(settings)
keys = ApiKeys.from_settings(settings)
http = HttpFunction.public("auth", settings, generations=generations, keys=keys, not_found=HttpError(
    404, "not_found", "try POST /signup, POST /login, GET or DELETE /account, POST /account/password, GET or POST "
                      "/keys, DELETE /keys/<id> or GET /.well-known/jwks.json"))
mailer = Mailer.from_settings(settings)
# A wrong login's challenge (RFC 9110 requires one on a 401): credentials go in the JSON body, not in an HTTP
# authentication scheme, so the scheme is one no browser acts on and the realm names where they go.
LOGIN_CHALLENGE = 'Password realm="vid2mp3", charset="UTF-8"'


@functions_framework.http
def auth(request: flask.Request) -> Any:
    return http(request)


def credentials_from(request: flask.Request) -> Credentials:
    return body_as(request, Credentials, "invalid_credentials_format")


def body_as(request: flask.Request, model: type[Body], code: str, shape: str = "") -> Body:
    """The request's JSON body as `model`, or a 422 `code` naming every problem (after `shape`, what is expected)."""
    body = read_json(request)
    try:
        return model.model_validate(body if isinstance(body, dict) else {})
    except ValidationError as error:
        raise HttpError(422, code, f"{shape}: {problems_in(error)}" if shape else problems_in(error)) from None


def problems_in(error: ValidationError) -> str:
    """Every problem at once, without echoing the submitted password back."""
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'body'}: {item['msg']}" for item in error.errors())


@http.route("/.well-known/jwks.json", "GET")
def jwks(request: flask.Request) -> flask.Response:
    # Cached by the verifiers for 5 minutes; then revalidated by its ETag.
    return cacheable(request, JWKS_DOCUMENT, "application/json", cache_control="max-age=300")


JWKS_DOCUMENT = json.dumps(issuer.jwks(), separators=(",", ":")).encode()


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
        accounts.sign_up(credentials)
    except AccountExists:
        # The same answer as a new account's, at the same speed (the password was hashed either way); the owner
        # hears of it by email, sent after the answer.
        signup_notices.tell(credentials.email)
    # Relative: the account answers under this function's URL and under /auth alike.
    return json_response(SignedUp(email=credentials.email).model_dump(), 201, {"Location": "account"})


@http.route("/account", "GET")
def show_account(request: flask.Request) -> flask.Response:
    identity = http.identity(request)
    return json_response(AccountView(account_id=identity.subject, email=identity.email).model_dump())


@http.route("/login", "POST")
def log_in(request: flask.Request) -> flask.Response:
    schema()
    try:
        account = accounts.log_in(credentials_from(request), client_address(request, settings.trusted_proxy_hops))
    except LoginRefused:
        raise HttpError(401, "login_refused", "wrong email address or password",
                        {"WWW-Authenticate": LOGIN_CHALLENGE}) from None
    except LoginThrottled as throttled:
        raise too_many_attempts(throttled) from None
    return access_token(account.account_id, account.email, generations.begin(account.account_id))


def access_token(account_id: str, email: str, generation: int) -> flask.Response:
    token = issuer.issue(account_id, email, generation)
    return json_response(AccessToken(access_token=token, expires_in=issuer.ttl_seconds).model_dump())


@http.route("/account/password", "POST")
def change_password(request: flask.Request) -> flask.Response:
    """The tokens (and links) of the old password stop first, then the password changes: should the second step
    fail, the owner logs in again with the old one."""
    identity = http.identity(request)
    change = body_as(request, PasswordChange, "invalid_password_change",
                     '{"password": <the current one>, "new_password": <8 to 1024 characters>}')
    schema()
    confirm_password(request, identity, change.password)
    generation = generations.advance(identity.subject)
    keys.delete_ended(identity.subject, generation)
    accounts.change_password(identity.subject, change.new_password)
    log.info("account %s changed its password", identity.subject)
    return access_token(identity.subject, identity.email, generation)


def confirm_password(request: flask.Request, identity: Identity, password: str) -> None:
    try:
        accounts.confirm(identity.subject, identity.email, password,
                         client_address(request, settings.trusted_proxy_hops))
    except LoginRefused:
        raise HttpError(403, "wrong_password", "the password does not match this account") from None
    except LoginThrottled as throttled:
        raise too_many_attempts(throttled) from None


@http.route("/account", "DELETE")
def delete_account(request: flask.Request) -> flask.Response:
    """The account's jobs first (media and records, running ones cancelled), then the account: should this stop
    midway, the owner can still log in and ask again."""
    identity = http.identity(request)
    body = read_json(request)
    try:
        password = PasswordConfirmation.model_validate(body if isinstance(body, dict) else {}).password
    except ValidationError:
        raise HttpError(422, "password_required", 'confirm with the account\'s password: {"password": "..."}') \
            from None
    schema()
    confirm_password(request, identity, password)
    jobs_deleted = erasure.erase_owner(identity.subject)
    webhooks.delete_owned(identity.subject)
    forget_usage(database, identity.subject)
    generations.end(identity.subject)
    keys.delete_owned(identity.subject)
    Feeds(database).delete_owned(identity.subject)
    accounts.delete(identity.subject, identity.email)
    log.info("account %s deleted with its %d jobs", identity.subject, jobs_deleted)
    return flask.Response(status=204)


@http.route("/keys", "POST")
def create_key(request: flask.Request) -> flask.Response:
    identity = http.identity(request)
    wanted = body_as(request, KeyRequest, "invalid_key_request",
                     '{"name": <1 to 100 characters>, "scopes": [some of "convert", "read", "delete", "webhooks"], '
                     '"expires_in_days": <1 to 366 or null>}')
    try:
        created = keys.create(identity.subject, identity.generation, wanted)
    except TooManyKeys as refused:
        raise HttpError(409, "too_many_keys", f"{refused}: revoke one first") from None
    log.info("account %s made API key %s", identity.subject, created.id)
    return json_response(created.model_dump(mode="json"), 201, {"Location": f"keys/{created.id}"})


@http.route("/keys", "GET")
def list_keys(request: flask.Request) -> flask.Response:
    identity = http.identity(request)
    return json_response(KeyList(keys=keys.list(identity.subject, identity.generation)).model_dump(mode="json"))


@http.route("/keys/<key_id>", "DELETE")
def revoke_key(request: flask.Request, key_id: str) -> flask.Response:
    if not keys.revoke(http.identity(request).subject, key_id):
        raise HttpError(404, "not_found", "no such API key")
    return flask.Response(status=204)


def too_many_attempts(throttled: LoginThrottled) -> HttpError:
    return HttpError(429, "too_many_attempts", f"{throttled.limit}: too many failed logins; try again later",
                     {"Retry-After": str(throttled.retry_after_seconds)})


class SignupNotices:
    """Tells the owner of an address that someone tried to sign up with it, by email, at most once an hour, from a
    thread of its own: the sign-up is answered first, as fast as a new account's. A notice lost to a crash is not
    sent again (it says nothing the owner must act on)."""

    def __init__(self, capacity: int = 100) -> None:
        self._waiting: queue.Queue[str] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tell(self, email: str) -> None:
        try:
            self._waiting.put_nowait(email)
        except queue.Full:
            log.warning("sign-up notices: %d waiting, one dropped", self._waiting.maxsize)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._send_waiting, name="signup-notices", daemon=True)
                self._thread.start()

    def _send_waiting(self) -> None:
        while True:
            try:
                email = self._waiting.get(timeout=30)
            except queue.Empty:
                return
            try:
                if accounts.take_signup_notice(email):
                    mailer.send(email, "Someone tried to sign up with your address", notice_text())
            except Exception as error:  # a store away, the mail API refusing: a notice never stops the next
                log.warning("sign-up notice to account %s not sent: %s", address_label(email), type(error).__name__)


def notice_text() -> str:
    page = f"\n\nvid2mp3: {settings.public_web_url}" if settings.public_web_url else ""
    return ("Someone tried to create a vid2mp3 account with this email address, which already has one. Nothing was "
            "changed: your account, its password and your jobs are as they were.\n\nIf it was you, log in with "
            "your password instead. If it was not, you need not do anything." + page + "\n")


def address_label(email: str) -> str:
    """An address in the logs: a digest, not the address."""
    return hashlib.sha256(email.encode()).hexdigest()[:12]


signup_notices = SignupNotices()
