"""Where the `vid2mp3` command finds its server and keeps its login.

A deployment is named by its web page's URL (`vid2mp3 login --server https://vid2mp3.example.com`): the page's
`config.json` names the public function URLs, so one URL is all a user needs to know. The login (those URLs, the
email and the access token, never the password) is kept in `$XDG_CONFIG_HOME/vid2mp3/login.json`
(`~/.config/vid2mp3/` by default), readable by the user alone (0600 in a 0700 folder). Without a login, on a
checkout whose local stack is up (`.local/endpoints.env`), the command signs in a local user by itself, so
`make run` needs no set-up.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from vid2mp3_client.api import ClientError, Vid2mp3

LOGIN_FILE = "login.json"
TIMEOUT_SECONDS = 15


class NotLoggedIn(ClientError):
    """No login is kept and no local stack is running."""


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


def save(login: Login) -> None:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / LOGIN_FILE
    # Created 0600 before anything is written into it: the token is as good as the password for an hour.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(login), file, indent=2)
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
