"""Credentials that end, on the real local stack: after a password change or the account's deletion, the tokens, API
keys and signed links issued before are refused by every public function within 60 s (each function keeps an
account's credential generation, and a key, for at most CREDENTIALS_CACHE_SECONDS), and a token of the new password
works. API keys: shown once, stored hashed, their scopes enforced (403 naming the missing one), revoked within 60 s."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.reliability_support import Stack, User, clip

pytestmark = pytest.mark.stack

# The promise: every function refuses ended credentials within this long.
ENDED_WITHIN_SECONDS = 60


def done_job(stack: Stack, user: User) -> dict[str, Any]:
    job_id = stack.accepted_upload(user, clip(2))
    job = stack.wait_final(user, [job_id], timeout=120)[job_id]
    assert job["state"] == "done", job
    return stack.job(user, job_id)


def answers(stack: Stack, token: str, job: dict[str, Any]) -> dict[str, int]:
    """What each public function answers a request with `token` (and the job's signed link, which needs none)."""
    points, headers = stack.points, {"Authorization": f"Bearer {token}"}
    session = stack.session
    return {
        "auth account": session.get(f"{points['AUTH_URL']}/account", headers=headers, timeout=30).status_code,
        "upload": session.post(points["UPLOAD_URL"], data=clip(1).read_bytes(), timeout=60, headers={
            **headers, "Content-Type": "application/octet-stream"}).status_code,
        "upload tus": session.post(f"{points['UPLOAD_URL']}/files", timeout=30, headers={
            **headers, "Tus-Resumable": "1.0.0", "Upload-Length": "1000"}).status_code,
        "status list": session.get(points["STATUS_URL"], headers=headers, timeout=30).status_code,
        "status job": session.get(f"{points['STATUS_URL']}/{job['job_id']}", headers=headers, timeout=30).status_code,
        "download": session.get(f"{points['DOWNLOAD_URL']}/{job['job_id']}", headers=headers,
                                timeout=30).status_code,
        "signed link": session.get(job["audio"]["download_link"], timeout=30).status_code,
        "webhooks": session.get(points["WEBHOOKS_URL"], headers=headers, timeout=30).status_code,
    }


WORKING = {"auth account": 200, "upload": 202, "upload tus": 201, "status list": 200, "status job": 200,
           "download": 200, "signed link": 200, "webhooks": 200}


# An API key with every scope: all of it but the account (a login's token only).
KEY_WORKING = WORKING | {"auth account": 403}


def new_key(stack: Stack, user: User, *scopes: str, name: str = "script") -> dict[str, Any]:
    made = stack.session.post(f"{stack.points['AUTH_URL']}/keys", headers=user.headers, timeout=30,
                              json={"name": name, "scopes": list(scopes)})
    assert made.status_code == 201, made.text
    return dict(made.json())


def refused_everywhere(stack: Stack, token: str, job: dict[str, Any], link_refusal: int) -> dict[str, int]:
    """Polls until every function refuses: the token (or key) with 401, the link with `link_refusal`; fails past
    60 s."""
    expected = {name: 401 for name in WORKING} | {"signed link": link_refusal}
    started = time.monotonic()
    while (seen := answers(stack, token, job)) != expected:
        assert time.monotonic() - started < ENDED_WITHIN_SECONDS, f"still not refused everywhere: {seen}"
        time.sleep(2)
    return seen


def test_a_password_change_ends_the_old_tokens_and_links_everywhere(stack: Stack) -> None:
    user = stack.new_user("changing")
    job = done_job(stack, user)
    key = new_key(stack, user, "convert", "read", "delete", "webhooks")["key"]
    assert answers(stack, user.token, job) == WORKING
    assert answers(stack, key, job) == KEY_WORKING
    change = f"{stack.points['AUTH_URL']}/account/password"
    new_password = user.password + "-new"
    wrong = stack.session.post(change, headers=user.headers, timeout=30,
                               json={"password": "not it at all", "new_password": new_password})
    assert (wrong.status_code, wrong.json()["error"]) == (403, "wrong_password")
    short = stack.session.post(change, headers=user.headers, timeout=30, json={"password": user.password,
                                                                               "new_password": "short"})
    assert (short.status_code, short.json()["error"]) == (422, "invalid_password_change")
    assert "short" not in short.text
    assert stack.session.post(change, timeout=30, json={"password": user.password,
                                                        "new_password": new_password}).status_code == 401
    changed = stack.session.post(change, headers=user.headers, timeout=30,
                                 json={"password": user.password, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    new_token = changed.json()["access_token"]

    # Another generation: the old link's signature no longer matches (403), the account still exists.
    refused_everywhere(stack, user.token, job, link_refusal=403)
    refused_everywhere(stack, key, job, link_refusal=403)
    challenge = stack.session.get(stack.points["STATUS_URL"], headers=user.headers, timeout=30)
    assert 'error="invalid_token"' in challenge.headers["WWW-Authenticate"]

    # The keys the change ended are gone from the list, even one a token of the old password made as it changed
    # (written here as that request would have: with the old generation); a key of the new password is listed.
    keys_url, new_headers = f"{stack.points['AUTH_URL']}/keys", {"Authorization": f"Bearer {new_token}"}
    assert stack.db["api_keys"].count_documents({"owner_id": user.account_id}) == 0
    generation = stack.db["credentials"].find_one({"_id": user.account_id})["generation"]
    stack.db["api_keys"].insert_one({"_id": "0" * 16, "owner_id": user.account_id, "generation": generation - 1,
                                     "name": "made as it changed", "scopes": ["read"], "secret_sha256": "0" * 64,
                                     "created_at": datetime.now(UTC), "last_used_at": None, "expires_at": None})
    kept = stack.session.post(keys_url, headers=new_headers, json={"name": "after", "scopes": ["read"]}, timeout=30)
    listed = stack.session.get(keys_url, headers=new_headers, timeout=30).json()["keys"]
    assert [shown["id"] for shown in listed] == [kept.json()["id"]]
    renewed = stack.job(User(user.email, new_password, user.account_id, new_token), job["job_id"])
    assert renewed["audio"]["download_link"] != job["audio"]["download_link"]
    assert answers(stack, new_token, renewed) == WORKING
    login = f"{stack.points['AUTH_URL']}/login"
    assert stack.session.post(login, json={"email": user.email, "password": user.password},
                              timeout=30).status_code == 401
    assert stack.session.post(login, json={"email": user.email, "password": new_password},
                              timeout=30).status_code == 200


def test_a_deleted_accounts_tokens_and_links_end_everywhere(stack: Stack) -> None:
    user = stack.new_user("ending")
    job = done_job(stack, user)
    # A second token of the same login, as a tab left open elsewhere would hold.
    other = stack.session.post(f"{stack.points['AUTH_URL']}/login", timeout=30,
                               json={"email": user.email, "password": user.password}).json()["access_token"]
    key = new_key(stack, user, "convert", "read", "delete", "webhooks")["key"]
    assert answers(stack, other, job) == WORKING
    deleted = stack.session.delete(f"{stack.points['AUTH_URL']}/account", headers=user.headers, timeout=60,
                                   json={"password": user.password})
    assert deleted.status_code == 204, deleted.text
    refused_everywhere(stack, other, job, link_refusal=404)
    refused_everywhere(stack, user.token, job, link_refusal=404)
    refused_everywhere(stack, key, job, link_refusal=404)
    assert stack.db["api_keys"].count_documents({"owner_id": user.account_id}) == 0


# --- API keys ---------------------------------------------------------------------------------------------------

def test_a_key_is_shown_once_stored_hashed_and_listed_with_its_use(stack: Stack) -> None:
    user = stack.new_user("keys")
    made = new_key(stack, user, "read", "read", "convert", name="nightly backup")
    assert re.fullmatch(r"v2m_[0-9a-f]{80}", made["key"]), "a prefix secret scanners can match"
    assert (made["name"], made["scopes"], made["last_used_at"]) == ("nightly backup", ["convert", "read"], None)
    assert made["expires_at"] > made["created_at"]
    stored = stack.db["api_keys"].find_one({"_id": made["id"]})
    secret = made["key"][len("v2m_") + 16:]
    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored)
    keys_url = f"{stack.points['AUTH_URL']}/keys"
    assert stack.session.get(stack.points["STATUS_URL"], headers={"Authorization": f"Bearer {made['key']}"},
                             timeout=30).status_code == 200
    listed = stack.session.get(keys_url, headers=user.headers, timeout=30)
    assert listed.status_code == 200 and secret not in listed.text
    [shown] = listed.json()["keys"]
    assert shown["id"] == made["id"] and shown["last_used_at"] is not None and "key" not in shown
    for body in ({"name": "", "scopes": ["read"]}, {"name": "x", "scopes": []}, {"name": "x", "scopes": ["admin"]},
                 {"name": "x", "scopes": ["read"], "expires_in_days": 0}, {"scopes": ["read"]}):
        refused = stack.session.post(keys_url, headers=user.headers, json=body, timeout=30)
        assert (refused.status_code, refused.json()["error"]) == (422, "invalid_key_request"), body
    # A key manages no keys, nor the account: a login's token only.
    key_headers = {"Authorization": f"Bearer {made['key']}"}
    for method, url in (("POST", keys_url), ("GET", keys_url), ("GET", f"{stack.points['AUTH_URL']}/account")):
        answer = stack.session.request(method, url, headers=key_headers, json={"name": "x", "scopes": ["read"]},
                                       timeout=30)
        assert (answer.status_code, answer.json()["error"]) == (403, "insufficient_scope"), (method, url)
    # Past its expiry (set before its first use, so that no function holds it yet): refused.
    expired = new_key(stack, user, "read")
    stack.db["api_keys"].update_one({"_id": expired["id"]}, {"$set": {"expires_at": datetime.now(UTC)}})
    assert stack.session.get(stack.points["STATUS_URL"], headers={"Authorization": f"Bearer {expired['key']}"},
                             timeout=30).status_code == 401
    stack.session.delete(f"{keys_url}/{expired['id']}", headers=user.headers, timeout=30)
    other = stack.new_user("other")
    assert stack.session.delete(f"{keys_url}/{made['id']}", headers=other.headers, timeout=30).status_code == 404
    assert stack.session.delete(f"{keys_url}/{made['id']}", headers=user.headers, timeout=30).status_code == 204
    assert stack.session.get(keys_url, headers=user.headers, timeout=30).json() == {"keys": []}


def test_a_read_only_key_reads_but_neither_converts_deletes_nor_manages_webhooks(stack: Stack) -> None:
    user = stack.new_user("reader")
    job = done_job(stack, user)
    key = new_key(stack, user, "read")["key"]
    seen = answers(stack, key, job)
    assert seen == WORKING | {"auth account": 403, "upload": 403, "upload tus": 403, "webhooks": 403}, seen
    headers = {"Authorization": f"Bearer {key}"}
    upload = stack.session.post(stack.points["UPLOAD_URL"], data=clip(1).read_bytes(), timeout=60, headers={
        **headers, "Content-Type": "application/octet-stream"})
    assert upload.json()["error"] == "insufficient_scope" and "`convert`" in upload.json()["message"]
    assert 'scope="convert"' in upload.headers["WWW-Authenticate"]
    removal = stack.session.delete(f"{stack.points['STATUS_URL']}/{job['job_id']}", headers=headers, timeout=30)
    assert removal.status_code == 403 and "`delete`" in removal.json()["message"]
    hooks = stack.session.get(stack.points["WEBHOOKS_URL"], headers=headers, timeout=30)
    assert "`webhooks`" in hooks.json()["message"]
    assert stack.job(user, job["job_id"])["state"] == "done"
    converter = new_key(stack, user, "convert")["key"]
    assert stack.session.post(stack.points["UPLOAD_URL"], data=clip(1).read_bytes(), timeout=60, headers={
        "Authorization": f"Bearer {converter}", "Content-Type": "application/octet-stream"}).status_code == 202


def test_a_revoked_key_is_refused_by_every_function_within_60_s(stack: Stack) -> None:
    user = stack.new_user("revoking")
    job = done_job(stack, user)
    made = new_key(stack, user, "convert", "read", "delete", "webhooks")
    assert answers(stack, made["key"], job) == KEY_WORKING
    assert stack.session.delete(f"{stack.points['AUTH_URL']}/keys/{made['id']}", headers=user.headers,
                                timeout=30).status_code == 204
    # The link is the job's, not the key's: it still works.
    refused_everywhere(stack, made["key"], job, link_refusal=200)
    assert answers(stack, user.token, job) == WORKING
