"""Auth and access on the running stack: forged tokens, SQL injection, login throttling and timing, other users' and
malformed ids, forged CloudEvents posted straight to the broker ingress, one event delivered five times, and no
token or password in any log. Each attack is counted; the figures say how many were tried and how many got in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import functions_framework
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accounts.credentials import CredentialGenerations
from accounts.tokens import TokenIssuer
from events import AudioConverted, ConversionFailed, FailureReason, VideoUploaded
from stack.config import LOGS, ROOT
from tests.reliability_support import (
    PASSWORDS_USED,
    Figures,
    Stack,
    Timer,
    User,
    log_text,
    median,
    tone_mp3,
)
from tests.support import download_link_keys, wait_for

FIGURES_SUITE = "security"  # the figures fixture writes .local/figures/security.json

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

DB_ERROR_WORDS = re.compile(r"sql|mysql|mariadb|pymysql|syntax|traceback|operationalerror|integrityerror|1064|"
                            r"errno|cursor", re.IGNORECASE)


@pytest.fixture(scope="module")
def owner(stack: Stack) -> User:
    return stack.new_user("owner")


@pytest.fixture(scope="module")
def intruder(stack: Stack) -> User:
    return stack.new_user("intruder")


@pytest.fixture(scope="module")
def owners_job(stack: Stack, owner: User) -> dict[str, Any]:
    """A finished job of `owner`, notified."""
    job_id = stack.accepted_upload(owner, tone_mp3(2), "mine.mp3")
    job = stack.wait_final(owner, [job_id], 300)[job_id]
    assert job["state"] == "done", job
    stack.wait_mailed(job_id, 60)
    return job


# --- Forged tokens -----------------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)))


class JwksServer:
    """Serves a key set over HTTP and counts the fetches (a `jku`/`x5u` target, or the JWKS of a test issuer)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.fetches = 0
        body = json.dumps(jwks).encode()
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def forged_tokens(real: str, real_jwks: dict[str, Any], attacker_url: str, victim_id: str) -> dict[str, str]:
    """Tokens anyone can make without the signing key: from a real token, the published key set and a key of
    their own."""
    real_header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    kid = real_header["kid"]
    public_jwk = next(key for key in real_jwks["keys"] if key["kid"] == kid)
    raw_public = base64.urlsafe_b64decode(public_jwk["x"] + "==")
    attacker = Ed25519PrivateKey.generate()
    attacker_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    stolen = {**claims, "sub": victim_id}
    signing_input_header, signing_input_claims, signature = real.split(".")
    hs256_keys = {
        "raw": raw_public,
        "jwk_json": json.dumps(public_jwk).encode(),
        "pem": serialization.load_der_public_key(
            b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00" + raw_public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    tokens = {
        "alg_none": unsigned({"alg": "none", "typ": "JWT", "kid": kid}, stolen),
        "alg_None": unsigned({"alg": "None", "typ": "JWT", "kid": kid}, stolen),
        "alg_none_with_real_signature": unsigned({"alg": "none", "kid": kid}, stolen, b"x" * 64),
        "signature_stripped": f"{signing_input_header}.{signing_input_claims}.",
        "claims_swapped_signature_kept": f"{signing_input_header}.{b64url(json.dumps(stolen).encode())}.{signature}",
        "attacker_key_real_kid": jwt.encode(stolen, attacker, algorithm="EdDSA", headers={"kid": kid}),
        "unknown_kid": jwt.encode(stolen, attacker, algorithm="EdDSA", headers={"kid": "attacker-key-1"}),
        "no_kid": jwt.encode(stolen, attacker, algorithm="EdDSA"),
        "jwk_header_injection": jwt.encode(stolen, attacker, algorithm="EdDSA",
                                           headers={"jwk": attacker_jwk, "kid": "attacker-key-2"}),
        "jwk_header_injection_real_kid": jwt.encode(stolen, attacker, algorithm="EdDSA",
                                                    headers={"jwk": attacker_jwk, "kid": kid}),
        "jku_header_injection": jwt.encode(stolen, attacker, algorithm="EdDSA",
                                           headers={"jku": attacker_url, "kid": "attacker-key-3"}),
        "x5u_header_injection": jwt.encode(stolen, attacker, algorithm="EdDSA",
                                           headers={"x5u": attacker_url, "kid": "attacker-key-4"}),
        "kid_path_traversal_hs256_empty_key": unsigned(
            {"alg": "HS256", "kid": "../../../../../../dev/null"}, stolen),
        "garbage": "not.a.token",
        "empty_bearer": "",
    }
    for label, key in hs256_keys.items():
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        body = b64url(json.dumps(stolen).encode())
        mac = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        tokens[f"hs256_with_public_key_{label}"] = f"{header}.{body}.{b64url(mac)}"
    return tokens


def attempts_at_public_functions(stack: Stack, token: str, victim_job: str) -> dict[str, int]:
    """The status of each request a stolen identity would make, with `token` as the bearer."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = 30
    return {
        "status_list": stack.session.get(stack.points["STATUS_URL"] + "/", headers=headers, timeout=timeout)
        .status_code,
        "status_job": stack.session.get(f"{stack.points['STATUS_URL']}/{victim_job}", headers=headers,
                                        timeout=timeout).status_code,
        "download": stack.session.get(f"{stack.points['DOWNLOAD_URL']}/{victim_job}", headers=headers,
                                      timeout=timeout).status_code,
        "upload": stack.session.post(stack.points["UPLOAD_URL"], data=tone_mp3(2).read_bytes(),
                                     headers={**headers, "Content-Type": "application/octet-stream"},
                                     timeout=timeout).status_code,
    }


def test_forged_tokens_are_refused_by_every_public_function(stack: Stack, owner: User, intruder: User,
                                                           owners_job: dict[str, Any], figures: Figures) -> None:
    real_jwks = stack.session.get(stack.points["JWKS_URL"], timeout=30).json()
    attacker_site = JwksServer({"keys": []})
    try:
        tokens = forged_tokens(intruder.token, real_jwks, attacker_site.url, owner.account_id)
        results = {label: attempts_at_public_functions(stack, token, owners_job["job_id"])
                   for label, token in tokens.items()}
        fetches = attacker_site.fetches
    finally:
        attacker_site.close()
    control = attempts_at_public_functions(stack, owner.token, owners_job["job_id"])
    accepted = {label: codes for label, codes in results.items() if any(code != 401 for code in codes.values())}
    figures["forged_tokens_live"] = {"tokens": len(tokens), "requests": sum(map(len, results.values())),
                                     "accepted": len(accepted), "jku_x5u_fetches": fetches,
                                     "control_real_token": control}
    assert accepted == {}
    assert fetches == 0
    assert control == {"status_list": 200, "status_job": 200, "download": 200, "upload": 202}


@pytest.fixture(scope="module")
def test_issuer() -> Iterator[tuple[TokenIssuer, Ed25519PrivateKey, JwksServer]]:
    """A token issuer with a key of the test's own, and its JWKS served over HTTP: functions built in-process
    against it verify tokens exactly as they do in the stack, and these tokens carry valid signatures."""
    key = Ed25519PrivateKey.generate()
    issuer = TokenIssuer(pem(key), issuer="vid2mp3-auth", audience="vid2mp3", ttl_seconds=3600)
    server = JwksServer(issuer.jwks())
    yield issuer, key, server
    server.close()


def signed(key: Ed25519PrivateKey, kid: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


CLAIM_FORGERIES = {
    "expired": {"exp": -3600},
    "expired_beyond_leeway": {"exp": -11},
    "not_yet_valid": {"nbf": 3600},
    "issued_in_the_future": {"iat": 3600, "nbf": None},
    "wrong_audience": {"aud": "someone-else"},
    "audience_list_without_ours": {"aud": ["a", "b"]},
    "wrong_issuer": {"iss": "evil-auth"},
    "missing_exp": {"exp": None},
    "missing_aud": {"aud": None},
    "missing_iss": {"iss": None},
    "missing_sub": {"sub": None},
    "missing_iat": {"iat": None},
    "empty_sub": {"sub": ""},
    "sub_not_a_string": {"sub": 12345},
    "exp_not_a_number": {"exp": "tomorrow"},
    "missing_gen": {"gen": None},
    "gen_not_a_number": {"gen": "1"},
    "gen_of_another_generation": {"gen": 10**9},
}


def claims_with(change: dict[str, Any], generation: int) -> dict[str, Any]:
    moment = int(time.time())
    claims: dict[str, Any] = {"sub": "999999", "email": "x@example.com", "iss": "vid2mp3-auth", "aud": "vid2mp3",
                              "iat": moment, "nbf": moment, "exp": moment + 600, "gen": generation}
    for name, value in change.items():
        if value is None:
            claims.pop(name, None)
        elif name in ("exp", "nbf", "iat") and isinstance(value, int):
            claims[name] = moment + value
        else:
            claims[name] = value
    return claims


@pytest.fixture(scope="module")
def in_process_functions(endpoints: dict[str, str], test_issuer: Any) -> Iterator[dict[str, Any]]:
    """upload, status and download built by functions-framework in this process, verifying against the test
    issuer's JWKS; everything else as the stack configures them."""
    _, _, server = test_issuer
    env = {"MONGO_URI": endpoints["MONGO_URI"], "K_SINK": endpoints["BROKER_INGRESS_URL"], "JWKS_URL": server.url,
           "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "PUBLIC_DOWNLOAD_URL": endpoints["DOWNLOAD_URL"],
           "DOWNLOAD_LINK_KEYS": download_link_keys(),
           "PUBLIC_UPLOAD_URL": endpoints["UPLOAD_URL"], "PUBLIC_AUTH_URL": endpoints["AUTH_URL"],
           "CORS_ALLOWED_ORIGINS": endpoints.get("WEB_URL", "http://127.0.0.1")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        clients = {name: functions_framework.create_app(target=name, source=str(ROOT / "functions" / name / "main.py"))
                   .test_client() for name in ("upload", "status", "download")}
    yield clients


def in_process_attempts(clients: dict[str, Any], token: str) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}"}
    return {
        "status": clients["status"].get("/", headers=headers).status_code,
        "download": clients["download"].get(f"/{uuid.uuid4().hex}", headers=headers).status_code,
        "upload": clients["upload"].post("/", data=b"", headers={**headers,
                                                                   "Content-Type": "application/octet-stream"})
        .status_code,
    }


def test_validly_signed_tokens_with_bad_claims_are_refused(test_issuer: Any, in_process_functions: dict[str, Any],
                                                          stack: Stack, figures: Figures) -> None:
    issuer, key, _ = test_issuer
    # The control account's credentials, current: the forgeries are refused for their claims alone.
    generation = CredentialGenerations(stack.db).begin("999999")
    control = in_process_attempts(in_process_functions, issuer.issue("999999", "x@example.com", generation))
    results = {label: in_process_attempts(in_process_functions,
                                          signed(key, issuer.key_id, claims_with(change, generation)))
               for label, change in CLAIM_FORGERIES.items()}
    accepted = {label: codes for label, codes in results.items() if any(code != 401 for code in codes.values())}
    figures["forged_claims_in_process"] = {"tokens": len(results), "requests": 3 * len(results),
                                           "accepted": len(accepted), "control_valid_token": control,
                                           "accepted_detail": accepted}
    # The control passes authentication: its answers are about the request, not the token.
    assert control == {"status": 200, "download": 404, "upload": 400}
    assert accepted == {}


# --- Accounts: SQL injection, throttling, one answer for unknown user and wrong password -------------------

SQL_EMAILS = [
    "' OR '1'='1", "' OR 1=1 -- ", "admin'--@example.com", "'OR'1'='1'--@example.com", "x@example.com'; --",
    "\"; DROP TABLE accounts; --@example.com", "x@example.com' UNION SELECT 1,2,3 --", "%@%.%", "_@_.__",
    "x@example.com\\", "x@example.com\x00' OR 1=1", "\u02bc OR 1=1 --@example.com", "x@example.com'/*",
    "*/ OR 1=1#@x.io",
]
SQL_PASSWORDS = [
    "' OR '1'='1' -- ", "anything' OR 'x'='x", "') OR ('1'='1", "\\' OR 1=1 #", "x' UNION SELECT password_hash "
    "FROM accounts --", "' OR 1=1; DROP TABLE login_failures; --",
]


def db_error_text(response: requests.Response) -> bool:
    return response.status_code >= 500 or bool(DB_ERROR_WORDS.search(response.text))


def test_sql_injection_in_sign_up_and_login(stack: Stack, owner: User, figures: Figures) -> None:
    auth = stack.points["AUTH_URL"]
    tried, bypasses, leaks, created = 0, [], [], 0
    for email in SQL_EMAILS:
        password = "pw-" + secrets.token_urlsafe(12)
        PASSWORDS_USED.add(password)
        signed_up = stack.session.post(f"{auth}/signup", json={"email": email, "password": password}, timeout=30)
        tried += 1
        created += signed_up.status_code == 201
        if db_error_text(signed_up):
            leaks.append(("signup", email, signed_up.status_code))
        # Whatever was created holds this password only: a payload password must not open it, nor the owner's.
        for password_payload in SQL_PASSWORDS[:2]:
            login = stack.session.post(f"{auth}/login", json={"email": email, "password": password_payload},
                                       timeout=30)
            tried += 1
            if login.status_code == 200:
                bypasses.append((email, password_payload))
            if db_error_text(login):
                leaks.append(("login", email, login.status_code))
    for password_payload in SQL_PASSWORDS:
        login = stack.session.post(f"{auth}/login", json={"email": owner.email, "password": password_payload},
                                   timeout=30)
        tried += 1
        if login.status_code == 200:
            bypasses.append((owner.email, password_payload))
        if db_error_text(login):
            leaks.append(("login", owner.email, login.status_code))
    # The accounts table is still there and still answers.
    control = stack.session.post(f"{auth}/login", json={"email": owner.email, "password": owner.password},
                                 timeout=30)
    figures["sql_injection"] = {"requests": tried, "bypasses": len(bypasses), "database_error_texts": len(leaks),
                                "payload_accounts_created_literally": created}
    assert bypasses == [] and leaks == []
    assert control.status_code in (200, 429)  # the owner's address just took failed logins


def login(stack: Stack, email: str, password: str) -> tuple[requests.Response, float]:
    timer = Timer()
    response = stack.session.post(f"{stack.points['AUTH_URL']}/login", json={"email": email, "password": password},
                                  timeout=30)
    return response, time.monotonic() - timer.started


def login_from_another_address(stack: Stack, email: str, password: str) -> tuple[int, str]:
    """A login from 127.0.0.2, a client address of its own (the whole of 127/8 is this machine's loopback)."""
    url = urllib.parse.urlsplit(stack.points["AUTH_URL"])
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30,
                                            source_address=("127.0.0.2", 0))
    try:
        connection.request("POST", "/login", body=json.dumps({"email": email, "password": password}),
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_login_is_throttled_per_account_and_address(stack: Stack, figures: Figures) -> None:
    user = stack.new_user("throttled")
    answers = [login(stack, user.email, "wrong-password-1")[0].status_code for _ in range(5)]
    blocked, _ = login(stack, user.email, user.password)  # the right password, too late from this address
    # Its owner, from another address, is not locked out.
    owner_elsewhere, owners_answer = login_from_another_address(stack, user.email, user.password)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    unknown_answers = [login(stack, unknown, "wrong-password-1")[0].status_code for _ in range(6)]
    other = stack.new_user("unthrottled")
    unaffected, _ = login(stack, other.email, other.password)
    figures["login_throttling"] = {"failures_before_429": answers.count(401), "after_limit": blocked.status_code,
                                   "retry_after_seconds": blocked.headers.get("Retry-After"),
                                   "unknown_address_answers": unknown_answers,
                                   "other_account_unaffected": unaffected.status_code,
                                   "owner_from_another_address": owner_elsewhere}
    assert answers == [401] * 5
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "access_token" not in blocked.text
    assert owner_elsewhere == 200 and "access_token" in owners_answer
    # An unknown address is throttled alike, so throttling tells nobody which addresses exist.
    assert unknown_answers == [401] * 5 + [429]
    assert unaffected.status_code == 200


def test_unknown_user_and_wrong_password_look_alike(stack: Stack, figures: Figures) -> None:
    samples = 9
    accounts = [stack.new_user("timing") for _ in range(samples)]
    unknown_times, wrong_times, bodies = [], [], set()
    for account in accounts:  # interleaved, so drift in load affects both alike
        unknown_response, unknown_seconds = login(stack, f"ghost-{uuid.uuid4().hex[:10]}@example.com", "pw-wrong-123")
        wrong_response, wrong_seconds = login(stack, account.email, "pw-wrong-123")
        assert unknown_response.status_code == wrong_response.status_code == 401
        bodies.update((unknown_response.text, wrong_response.text))
        unknown_times.append(unknown_seconds)
        wrong_times.append(wrong_seconds)
    unknown_median, wrong_median = median(unknown_times), median(wrong_times)
    figures["login_unknown_vs_wrong_password"] = {
        "samples_each": samples, "distinct_answers": len(bodies),
        "median_ms_unknown_user": round(unknown_median * 1000, 1),
        "median_ms_wrong_password": round(wrong_median * 1000, 1)}
    assert len(bodies) == 1
    assert abs(unknown_median - wrong_median) <= max(0.05, 0.35 * max(unknown_median, wrong_median))


# --- Other users' ids, guessed ids, malformed ids ----------------------------------------------------------

MALFORMED_IDS = ["0", "A" * 32, "g" * 32, "0" * 31, "0" * 33, "..%2f..%2fetc%2fpasswd", "%00", "' OR '1'='1",
                 "{\"$ne\":null}", "[$ne]=1", "*", "%2e%2e", "null", "undefined", "-1", "0x41", "😀" * 8]


def answer_shape(response: requests.Response) -> tuple[int, str, str]:
    return response.status_code, response.headers.get("Content-Type", ""), response.text


def test_other_users_guessed_and_malformed_ids_look_missing(stack: Stack, owner: User, intruder: User,
                                                            owners_job: dict[str, Any], figures: Figures) -> None:
    job_id = owners_job["job_id"]
    missing = uuid.uuid4().hex
    urls = {"status": stack.points["STATUS_URL"], "download": stack.points["DOWNLOAD_URL"]}
    baseline = {(name, method): answer_shape(stack.session.request(method, f"{url}/{missing}",
                                                                    headers=intruder.headers, timeout=30))
                for name, url in urls.items() for method in ("GET", "HEAD")}
    assert all(shape[0] == 404 for (_, method), shape in baseline.items() if method == "GET"), baseline
    requests_made, differing, audio_bytes = 0, [], 0
    probes = [job_id, *(uuid.uuid4().hex for _ in range(20)), *MALFORMED_IDS]
    for candidate in probes:
        for name, url in urls.items():
            for method in ("GET", "HEAD"):
                response = stack.session.request(method, f"{url}/{candidate}", headers=intruder.headers,
                                                 timeout=30)
                requests_made += 1
                if response.headers.get("Content-Type", "").startswith("audio/"):
                    audio_bytes += len(response.content) or int(response.headers.get("Content-Length", 0))
                # HEAD on a malformed id may be refused before its method is (404 rather than 405): the id's
                # format is no secret; existence is, and GET answers it exactly as for a missing job.
                malformed_head = method == "HEAD" and candidate in MALFORMED_IDS
                if (response.status_code < 400 or response.content) if malformed_head else \
                        answer_shape(response) != baseline[(name, method)]:
                    differing.append((name, method, candidate, response.status_code))
    # Someone else's job through every other route of status.
    for suffix, method in (("/cancel", "POST"), ("/events", "GET")):
        mine = stack.session.request(method, f"{urls['status']}/{job_id}{suffix}", headers=intruder.headers,
                                     timeout=30)
        absent = stack.session.request(method, f"{urls['status']}/{missing}{suffix}", headers=intruder.headers,
                                       timeout=30)
        requests_made += 2
        if answer_shape(mine) != answer_shape(absent) or mine.status_code < 400:
            differing.append(("status", method + suffix, job_id, mine.status_code))
    listed = stack.session.get(urls["status"] + "/", headers=intruder.headers, timeout=30).json()["jobs"]
    owner_view = stack.job(owner, job_id)
    figures["ids"] = {"requests": requests_made, "answers_differing_from_missing": len(differing),
                      "audio_bytes_served": audio_bytes, "owners_jobs_listed_to_intruder":
                          sum(job["job_id"] == job_id for job in listed)}
    assert differing == [] and audio_bytes == 0
    assert all(job["job_id"] != job_id for job in listed)
    assert owner_view["state"] == "done"  # the intruder's cancel changed nothing
    assert stack.download(owner, job_id).status_code == 200


# --- Forged CloudEvents at the broker ingress --------------------------------------------------------------

def test_forged_events_at_the_ingress_convert_and_mail_nothing(stack: Stack, owner: User, intruder: User,
                                                              owners_job: dict[str, Any], figures: Figures) -> None:
    """The ingress authenticates nobody: a forged event must only ever be checked against the job records."""
    job_id = owners_job["job_id"]
    audio = owners_job["audio"]
    record = stack.db.jobs.find_one({"_id": job_id})
    history_before = stack.transitions(job_id)
    owner_mails_before = len(stack.mails_about(job_id))
    ghost = uuid.uuid4().hex
    moment = datetime.now(UTC)
    uploaded = {"video_id": record["video_id"], "filename": "x.mp4", "size_bytes": 10, "sha256": "0" * 64,
                "uploaded_at": moment}
    converted = {"audio_id": audio["audio_id"], "size_bytes": audio["size_bytes"], "sha256": audio["sha256"],
                 "duration_seconds": 2.0, "bitrate_kbps": None, "stream_copied": True, "converted_at": moment}
    forgeries = {
        "video_uploaded_ghost_job_owners_video": VideoUploaded(job_id=ghost, owner_id=intruder.account_id,
                                                               **uploaded),
        "video_uploaded_owners_job_as_intruder": VideoUploaded(job_id=job_id, owner_id=intruder.account_id,
                                                               **uploaded),
        "video_uploaded_owners_job_path_as_video": VideoUploaded(
            job_id=uuid.uuid4().hex, owner_id=intruder.account_id, **{**uploaded, "video_id": "../../etc/passwd"}),
        "audio_converted_owners_job_to_intruder": AudioConverted(job_id=job_id, owner_id=intruder.account_id,
                                                                 **converted),
        "audio_converted_ghost_job": AudioConverted(job_id=uuid.uuid4().hex, owner_id=intruder.account_id,
                                                    **converted),
        "audio_converted_replayed_for_owner": AudioConverted(job_id=job_id, owner_id=owner.account_id,
                                                             **converted),
        "conversion_failed_owners_job": ConversionFailed(job_id=job_id, owner_id=owner.account_id,
                                                         reason=FailureReason.NOT_MEDIA, message="forged",
                                                         failed_at=moment),
    }
    answers = {label: stack.post_event(payload) for label, payload in forgeries.items()}
    assert all(code == 202 for code in answers.values()), answers  # the ingress takes anything
    # Each consumer says, in its log, that it ignored the forgeries aimed at it.
    wait_for(lambda: f"job {ghost}" in log_text("convert") and "ignoring video uploaded for job " + job_id
             in log_text("convert"), 60, "convert to read the forged video-uploaded events")
    wait_for(lambda: log_text("notify").count(f"job {job_id}") >= 1, 60,
             "notify to read the forged audio-converted events")
    # A sentinel behind them in both queues: once it is mailed, the forgeries have been through.
    sentinel = stack.accepted_upload(intruder, tone_mp3(2), "sentinel.mp3")
    stack.wait_final(intruder, [sentinel], 300)
    stack.wait_mailed(sentinel, 60)
    created = stack.db.jobs.count_documents({"_id": {"$in": [p.job_id for p in forgeries.values()
                                                             if p.job_id != job_id]}})
    converted_for_forgeries = sum(stack.audio_files(p.job_id) for p in forgeries.values() if p.job_id != job_id)
    intruder_mails = [mail for mail in stack.mails_to(intruder.email) if sentinel not in json.dumps(mail)]
    owner_mails = len(stack.mails_about(job_id)) - owner_mails_before
    figures["forged_events"] = {"tried": len(forgeries), "jobs_created": created,
                                "conversions": converted_for_forgeries, "mails_to_intruder": len(intruder_mails),
                                "extra_mails_to_owner": owner_mails,
                                "owner_job_transitions_changed": stack.transitions(job_id) != history_before}
    assert created == 0 and converted_for_forgeries == 0
    assert intruder_mails == [] and owner_mails == 0
    assert stack.transitions(job_id) == history_before
    assert stack.job(owner, job_id)["state"] == "done"


# --- One event, delivered five times -----------------------------------------------------------------------

def test_an_event_delivered_five_times_acts_once(stack: Stack, figures: Figures) -> None:
    user = stack.new_user("fivefold")
    job_id = stack.accepted_upload(user, tone_mp3(3), "five.mp3")
    record = stack.db.jobs.find_one({"_id": job_id})
    uploaded = VideoUploaded(job_id=job_id, owner_id=record["owner_id"], video_id=record["video_id"],
                             filename=record["filename"], size_bytes=record["size_bytes"], sha256=record["sha256"],
                             bitrate_kbps=record["bitrate_kbps"], uploaded_at=record["created_at"])
    # The upload delivered it once; four more, at once, while the first may still be converting.
    threads = [threading.Thread(target=stack.post_event, args=(uploaded, "upload")) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job = stack.wait_final(user, [job_id], 300)[job_id]
    assert job["state"] == "done", job
    stack.wait_mailed(job_id, 60)
    audio = job["audio"]
    converted = AudioConverted(job_id=job_id, owner_id=user.account_id, audio_id=audio["audio_id"],
                               size_bytes=audio["size_bytes"], sha256=audio["sha256"],
                               duration_seconds=audio["duration_seconds"], bitrate_kbps=None,
                               stream_copied=audio["stream_copied"], converted_at=datetime.now(UTC))
    for _ in range(4):  # and the converter's event four more times
        stack.post_event(converted, "convert")
    # Late repeats of the first event too, after the job is done.
    for _ in range(4):
        stack.post_event(uploaded, "upload")
    sentinel = stack.accepted_upload(user, tone_mp3(2), "sentinel.mp3")
    stack.wait_final(user, [sentinel], 300)
    stack.wait_mailed(sentinel, 60)
    time.sleep(3)  # a repeat is answered once the converter renews its lease (1 s) or the job ends; and a margin
    transitions = stack.transitions(job_id)
    mails = len(stack.mails_about(job_id))
    mp3s = stack.audio_files(job_id)
    figures["fivefold_delivery"] = {"deliveries_video_uploaded": 9, "deliveries_audio_converted": 5, "mp3s": mp3s,
                                    "emails": mails, "transitions": transitions,
                                    "attempts": stack.db.jobs.find_one({"_id": job_id})["attempts"]}
    assert mp3s == 1 and mails == 1
    assert transitions == ["uploaded", "converting", "done"]


# --- The job record: every guard above is an atomic compare-and-set on it ---------------------------------

def test_concurrent_updates_of_one_job_record_are_all_kept(stack: Stack, figures: Figures) -> None:
    """What the job state machine rests on: two functions updating different fields of one job at the same moment
    (the upload clearing its sent event while the converter claims the job; the converter clearing its event while
    notify claims the email) both land. A store that applies updates as read, modify, write back the whole document
    loses one of them: a claimed job falls back to `uploaded`, a sent email is forgotten and sent again."""
    collection = stack.db["reliability_atomicity"]
    rounds, lost = 40, 0
    try:
        for _ in range(rounds):
            document_id = uuid.uuid4().hex
            collection.insert_one({"_id": document_id, "state": "uploaded", "pending_event": {"id": "x"}})
            barrier = threading.Barrier(2)

            def clear_pending(document_id: str = document_id, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                collection.update_one({"_id": document_id, "pending_event.id": "x"},
                                      {"$unset": {"pending_event": ""}})

            def claim(document_id: str = document_id, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                collection.find_one_and_update({"_id": document_id, "state": "uploaded"},
                                               {"$set": {"state": "converting"}})

            threads = [threading.Thread(target=clear_pending), threading.Thread(target=claim)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            document = collection.find_one({"_id": document_id}) or {}
            lost += document.get("state") != "converting" or "pending_event" in document
    finally:
        collection.drop()
    figures["job_record_atomicity"] = {"concurrent_update_pairs": rounds, "updates_lost": lost}
    assert lost == 0, f"{lost} of {rounds} concurrent update pairs lost an update: the document store does not " \
                      "apply updates atomically"


# --- Logs ---------------------------------------------------------------------------------------------------

def test_no_token_or_password_in_any_log(stack: Stack, owner: User, intruder: User, figures: Figures) -> None:
    """Runs last in this module: every token and password above (and in the hostile-media suite) went through
    the stack by now."""
    files = [path for path in LOGS.rglob("*") if path.is_file()]
    tokens, passwords = [], []
    secrets_used = {password for password in PASSWORDS_USED if len(password) >= 12}
    for path in files:
        text = path.read_text(errors="replace")
        if "eyJ" in text:
            tokens.append(str(path.relative_to(LOGS)))
        if any(password in text for password in secrets_used):
            passwords.append(str(path.relative_to(LOGS)))
    figures["logs"] = {"files": len(files), "passwords_looked_for": len(secrets_used),
                       "files_with_tokens": tokens, "files_with_passwords": passwords}
    assert tokens == [] and passwords == []
