"""Where the `vid2mp3` command finds its server and keeps its login.

A deployment is named by its web page's URL (`vid2mp3 login --server https://vid2mp3.example.com`): the page's
`config.json` names the public function URLs, so one URL is all a user needs to know. The login (those URLs, the
email and the access token, never the password) is kept in `$XDG_CONFIG_HOME/vid2mp3/login.json`
(`~/.config/vid2mp3/` by default), readable by the user alone (0600 in a 0700 folder). Without a login, on a
checkout whose local stack is up (`.local/endpoints.env`), the command signs in a local user by itself, so
`make run` needs no set-up: its address (its own, so that checkouts sharing the stack's data stores do not share
it) and password are made on first use and its token kept while it lasts, all beside the stack's files
(`.local/client-credentials`, `.local/client-token.json`, 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from vid2mp3_client.api import ClientError, Unauthorized, Vid2mp3, read_endpoints

LOGIN_FILE = "login.json"
TIMEOUT_SECONDS = 15
# The local user's address: `you-<random>@vid2mp3.local` (checkouts made before 7 December 2026 kept
# `you@vid2mp3.local`, which goes on working).
LOCAL_EMAIL_DOMAIN = "vid2mp3.local"
# A kept token is used until this many seconds before it expires: a conversion started on it should not see it lapse.
TOKEN_MARGIN_SECONDS = 120


class NotLoggedIn(ClientError):
    """No login is kept and no local stack is running."""


class LocalUserRefused(ClientError):
    """The local stack refused the local user's saved credentials: its account there has another password."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vid2mp3"


@dataclass(frozen=True)
class Login:
    server: str
    auth_url: str
    upload_url: str
    status_url: str
    download_url: str
    email: str
    token: str

    def client(self) -> Vid2mp3:
        return Vid2mp3(self.auth_url, self.upload_url, self.status_url, self.download_url, token=self.token)


def discover(server: str) -> dict[str, str]:
    """The public function URLs a deployment's web page names in its config.json."""
    url = server.rstrip("/") + "/config.json"
    try:
        response = requests.get(url, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise ClientError(f"cannot reach vid2mp3 at {server}: {type(error).__name__}") from None
    try:
        urls = response.json()
        return {name: str(urls[name]) for name in ("auth_url", "upload_url", "status_url", "download_url")}
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"{server} does not look like a vid2mp3 web page (no config.json naming its "
                          f"functions; HTTP {response.status_code})") from None


def log_in(server: str, email: str, password: str, *, sign_up: bool) -> Login:
    urls = discover(server)
    client = Vid2mp3(urls["auth_url"], urls["upload_url"], urls["status_url"], urls["download_url"])
    try:
        if sign_up:
            client.sign_up(email, password)
        client.log_in(email, password)
    except requests.ConnectionError:
        raise ClientError(f"cannot reach vid2mp3's auth function at {urls['auth_url']}") from None
    login = Login(server=server.rstrip("/"), email=email, token=client.token, **urls)
    save(login)
    return login


def log_in_with_key(server: str, key: str) -> Login:
    """A login that is an API key (`v2m_...`): kept as the token is, sent the same way, and never expiring before
    the key does. Checked first: a key the server does not know answers 401 (one without the `read` scope, 403)."""
    if not key.startswith("v2m_"):
        raise ClientError("that is not a vid2mp3 API key (they start with `v2m_`)")
    urls = discover(server)
    try:
        check = requests.get(urls["status_url"], headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_SECONDS)
    except requests.ConnectionError:
        raise ClientError(f"cannot reach vid2mp3's status function at {urls['status_url']}") from None
    if check.status_code == 401:
        raise ClientError("the server does not accept this API key (revoked, expired or mistyped)")
    login = Login(server=server.rstrip("/"), email="", token=key, **urls)
    save(login)
    return login


def save(login: Login) -> None:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(folder / LOGIN_FILE, json.dumps(asdict(login), indent=2))


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner reads: created 0600 before anything is written into it (a token is as good as
    the password for an hour)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


def saved() -> Login | None:
    path = config_dir() / LOGIN_FILE
    if not path.exists():
        return None
    try:
        return Login(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        raise ClientError(f"{path} is damaged: run `vid2mp3 logout`, then log in again") from None


def log_out() -> bool:
    path = config_dir() / LOGIN_FILE
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


class LocalUser:
    """The local stack's own user (`.local/`, beside the stack's files): its password made on first use, its token
    kept while it lasts, so a run of the command logs in only when the kept token is missing, near its end or refused.
    Clients converting side by side share one: a token refused to several of them is renewed once."""

    def __init__(self, local: Path, endpoints_file: Path) -> None:
        self.local = local
        self.endpoints = read_endpoints(endpoints_file)
        self.lock = threading.Lock()
        self.token, self.expires_at = self.kept()

    @property
    def credentials_file(self) -> Path:
        return self.local / "client-credentials"

    @property
    def token_file(self) -> Path:
        return self.local / "client-token.json"

    def credentials(self) -> tuple[str, str]:
        if not self.credentials_file.exists():
            self.local.mkdir(parents=True, exist_ok=True)
            email = f"you-{secrets.token_hex(4)}@{LOCAL_EMAIL_DOMAIN}"
            write_private(self.credentials_file, f"{email}\n{secrets.token_urlsafe(18)}\n")
        email, password = self.credentials_file.read_text().split()[:2]
        return email, password

    def kept(self) -> tuple[str, float]:
        """The kept token and when it expires, if it was given by this stack's auth function ("", 0 otherwise)."""
        try:
            kept = json.loads(self.token_file.read_text())
            if kept["auth_url"] == self.endpoints["AUTH_URL"]:
                return str(kept["token"]), float(kept["expires_at"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return "", 0.0

    def client(self) -> Vid2mp3:
        """A client with a token that lasts a while yet (logging in first if the kept one does not)."""
        with self.lock:
            if not self.token or self.expires_at - time.time() < TOKEN_MARGIN_SECONDS:
                self.log_in()
        return Vid2mp3(self.endpoints["AUTH_URL"], self.endpoints["UPLOAD_URL"], self.endpoints["STATUS_URL"],
                       self.endpoints["DOWNLOAD_URL"], token=self.token, token_expires_at=self.expires_at,
                       renew_token=self.renew)

    def renew(self, refused_by: Vid2mp3) -> str:
        """A token for a client whose token was refused: a newer one if another client has renewed it already."""
        with self.lock:
            if self.token == refused_by.token:
                self.log_in()
            return self.token

    def log_in(self) -> None:
        client = Vid2mp3(self.endpoints["AUTH_URL"], "", "", "")
        email, password = self.credentials()
        try:
            client.log_in_or_sign_up(email, password)
        except Unauthorized:
            # Neither logged in nor signed up (a sign-up of an address that has an account changes nothing): the
            # address has an account on this stack, made with another password.
            raise LocalUserRefused(
                f"this stack ({self.endpoints['AUTH_URL']}) refused the local user's saved credentials: {email} "
                f"has an account there with another password than the one in {self.credentials_file} (the "
                "stack's accounts were made before that file, or are shared with another checkout). To go on, "
                f"remove {self.credentials_file} and {self.token_file}: the next run makes a local user of its "
                f"own (the jobs of {email} stay with that account); or log in as yourself with `vid2mp3 login`, "
                "and convert without --local.") from None
        self.token, self.expires_at = client.token, client.token_expires_at or 0.0
        write_private(self.token_file, json.dumps({"auth_url": self.endpoints["AUTH_URL"], "token": self.token,
                                                   "expires_at": self.expires_at}))
