"""Access tokens: the issuer's key set (RFC 8037's key for the key id) and tokens; the verifier, on a key set served on
loopback, taking only the issuer's and refusing forged, expired, misdirected or incomplete ones; the bearer header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accounts.tokens import (
    LEEWAY_SECONDS,
    REQUIRED_CLAIMS,
    Identity,
    InvalidToken,
    TokenIssuer,
    TokenVerifier,
    bearer_token,
    key_thumbprint,
)

ISSUER, AUDIENCE = "vid2mp3-auth", "vid2mp3"
# RFC 8037, appendix A.1-A.3: an Ed25519 key, its public half and that half's RFC 7638 thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def unpadded_b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_key_id_is_the_rfc_7638_thumbprint() -> None:
    assert key_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}) == RFC8037_THUMBPRINT
    key = Ed25519PrivateKey.from_private_bytes(unpadded_b64url_decode(RFC8037_D))
    issuer = TokenIssuer(pem(key), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=3600)
    assert issuer.key_id == RFC8037_THUMBPRINT
    assert issuer.jwks() == {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": RFC8037_THUMBPRINT,
                                       "alg": "EdDSA", "use": "sig"}]}  # the public half only: no `d`


def test_a_key_id_given_is_used() -> None:
    issuer = TokenIssuer(pem(Ed25519PrivateKey.generate()), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60,
                         key_id="2026-05")
    assert issuer.key_id == "2026-05" and issuer.jwks()["keys"][0]["kid"] == "2026-05"
    assert jwt.get_unverified_header(issuer.issue("1", "a@b.test", 1))["kid"] == "2026-05"


def test_only_an_ed25519_key_issues() -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        TokenIssuer(pem(ec.generate_private_key(ec.SECP256R1())), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)


def test_a_token_carries_every_claim_signed_with_the_key() -> None:
    key = Ed25519PrivateKey.generate()
    issuer = TokenIssuer(pem(key), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)
    before = int(time.time())
    token = issuer.issue("42", "someone@example.test", 1)
    claims = jwt.decode(token, key.public_key(), algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert (claims["sub"], claims["email"], claims["gen"]) == ("42", "someone@example.test", 1)
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 900
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": issuer.key_id, "typ": "JWT"}
    assert claims["jti"] != jwt.decode(issuer.issue("42", "someone@example.test", 1), key.public_key(),
                                       algorithms=["EdDSA"], audience=AUDIENCE)["jti"]


# --- The verifier, against a key set served on loopback ------------------------------------------------------

class KeySetServer:
    """Serves a key set over HTTP on 127.0.0.1 and counts the fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.fetches = 0
        body = json.dumps(jwks).encode()
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *arguments: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Auth:
    """An issuer, its private key (to sign tokens the issuer would not), its key set served, and a verifier."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.issuer = TokenIssuer(pem(self.key), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=3600)
        self.key_set = KeySetServer(self.issuer.jwks())
        self.verifier = TokenVerifier(self.key_set.url, issuer=ISSUER, audience=AUDIENCE)

    def claims(self, **changes: Any) -> dict[str, Any]:
        moment = int(time.time())
        claims = {"sub": "42", "email": "someone@example.test", "iss": ISSUER, "aud": AUDIENCE, "iat": moment,
                  "nbf": moment, "exp": moment + 600, "gen": 3}
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, **headers: Any) -> str:
        return jwt.encode(claims, key or self.key, algorithm="EdDSA", headers={"kid": self.issuer.key_id, **headers})


@pytest.fixture
def auth() -> Iterator[Auth]:
    made = Auth()
    yield made
    made.key_set.close()


def refusal(auth: Auth, token: str) -> str:
    with pytest.raises(InvalidToken) as refused:
        auth.verifier.verify(token)
    assert token not in str(refused.value)
    return str(refused.value)


def test_the_issuers_tokens_are_accepted_and_the_key_set_is_fetched_once(auth: Auth) -> None:
    for subject in ("1", "2", "3"):
        assert auth.verifier.verify(auth.issuer.issue(subject, f"{subject}@example.test", 1)) == \
            Identity(subject=subject, email=f"{subject}@example.test", generation=1)
    assert auth.key_set.fetches == 1


def test_a_token_without_an_email_gives_an_empty_one(auth: Auth) -> None:
    assert auth.verifier.verify(auth.sign(auth.claims(email=None))) == Identity(subject="42", email="", generation=3)


@pytest.mark.parametrize(("changes", "words"), [
    ({"aud": "another-service"}, "InvalidAudienceError"),
    ({"iss": "someone-else"}, "InvalidIssuerError"),
    ({"exp": int(time.time()) - LEEWAY_SECONDS - 30}, "ExpiredSignatureError"),
    ({"nbf": int(time.time()) + LEEWAY_SECONDS + 300}, "ImmatureSignatureError"),
    ({"sub": ""}, "names no subject"),
    ({"gen": "3"}, "generation is not a number"),
    ({"gen": True}, "generation is not a number"),
    *[({claim: None}, "MissingRequiredClaimError") for claim in REQUIRED_CLAIMS],
])
def test_tokens_with_wrong_or_missing_claims_are_refused(auth: Auth, changes: dict[str, Any], words: str) -> None:
    assert words in refusal(auth, auth.sign(auth.claims(**changes)))


def test_a_token_expired_within_the_leeway_is_accepted(auth: Auth) -> None:
    token = auth.sign(auth.claims(exp=int(time.time()) - LEEWAY_SECONDS // 2))
    assert auth.verifier.verify(token).subject == "42"


def test_a_token_signed_by_another_key_under_the_issuers_key_id_is_refused(auth: Auth) -> None:
    assert "InvalidSignatureError" in refusal(auth, auth.sign(auth.claims(), key=Ed25519PrivateKey.generate()))


def test_tokens_of_unknown_keys_are_refused_without_a_fetch_each(auth: Auth) -> None:
    auth.verifier.verify(auth.issuer.issue("1", "a@b.test", 1))
    for _ in range(5):
        stranger = TokenIssuer(pem(Ed25519PrivateKey.generate()), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
        refusal(auth, stranger.issue("1", "a@b.test", 1))
    # At most one fetch more (PyJWKClient refreshes the set for an unknown key id, then not again for 30 s):
    # made-up key ids do not turn the verifier into a flood of requests at auth.
    assert auth.key_set.fetches <= 2


def test_a_key_named_by_the_token_itself_is_never_fetched(auth: Auth) -> None:
    """`jku` and `jwk` headers point at keys of the attacker's choosing; the verifier reads only its own key set."""
    attacker_key = Ed25519PrivateKey.generate()
    attacker = TokenIssuer(pem(attacker_key), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
    attacker_set = KeySetServer(attacker.jwks())
    try:
        public_jwk = attacker.jwks()["keys"][0]
        token = auth.sign(auth.claims(), key=attacker_key, kid=attacker.key_id, jku=attacker_set.url, jwk=public_jwk)
        refusal(auth, token)
        assert attacker_set.fetches == 0
    finally:
        attacker_set.close()


def test_tokens_of_another_algorithm_are_refused_before_any_key_is_read(auth: Auth) -> None:
    public_pem = auth.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = jwt.encode(auth.claims(), "", algorithm="none", headers={"kid": auth.issuer.key_id})
    assert "'none' is not accepted" in refusal(auth, unsigned)
    # The public key as an HMAC secret: the classic algorithm confusion.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": auth.issuer.key_id}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(auth.claims()).encode()).rstrip(b"=")
    mac = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    confused = b".".join([header, payload, base64.urlsafe_b64encode(mac).rstrip(b"=")]).decode()
    assert "'HS256' is not accepted" in refusal(auth, confused)
    assert auth.key_set.fetches == 0


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.", "é.é.é"])
def test_what_is_not_a_token_is_refused(auth: Auth, token: str) -> None:
    with pytest.raises(InvalidToken):
        auth.verifier.verify(token)


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc.def.ghi", "abc.def.ghi"),
    ("bearer abc", "abc"),
    ("BEARER  abc  ", "abc"),
])
def test_the_bearer_token_is_read_from_authorization(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc",
                                    "Bearerabc", "abc.def.ghi"])
def test_an_authorization_without_a_bearer_token_is_refused(header: str | None) -> None:
    with pytest.raises(InvalidToken, match="Bearer <token>"):
        bearer_token(header)
