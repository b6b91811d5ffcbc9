"""Credentials that end, on the real local stack: after a password change or the account's deletion, the tokens and
signed links issued before are refused by every public function within 60 s (each function keeps an account's
credential generation for at most CREDENTIALS_CACHE_SECONDS), and a token of the new password works."""

from __future__ import annotations

import time
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


def refused_everywhere(stack: Stack, token: str, job: dict[str, Any], link_refusal: int) -> dict[str, int]:
    """Polls until every function refuses: the token with 401, the link with `link_refusal`; fails past 60 s."""
    expected = {name: 401 for name in WORKING} | {"signed link": link_refusal}
    started = time.monotonic()
    while (seen := answers(stack, token, job)) != expected:
        assert time.monotonic() - started < ENDED_WITHIN_SECONDS, f"still not refused everywhere: {seen}"
        time.sleep(2)
    return seen


def test_a_password_change_ends_the_old_tokens_and_links_everywhere(stack: Stack) -> None:
    user = stack.new_user("changing")
    job = done_job(stack, user)
    assert answers(stack, user.token, job) == WORKING
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
    challenge = stack.session.get(stack.points["STATUS_URL"], headers=user.headers, timeout=30)
    assert 'error="invalid_token"' in challenge.headers["WWW-Authenticate"]

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
    assert answers(stack, other, job) == WORKING
    deleted = stack.session.delete(f"{stack.points['AUTH_URL']}/account", headers=user.headers, timeout=60,
                                   json={"password": user.password})
    assert deleted.status_code == 204, deleted.text
    refused_everywhere(stack, other, job, link_refusal=404)
    refused_everywhere(stack, user.token, job, link_refusal=404)
