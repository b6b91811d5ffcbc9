"""Access tokens: EdDSA (Ed25519) JWTs issued by `auth`, verified by every other function against auth's JWKS.

One accepted algorithm, never taken from the token; every claim required; keys chosen by `kid` from the JWKS
only (`jku`, `jwk` and `x5u` headers are ignored); a small leeway for clock skew (RFC 8725, OWASP JWT).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"
# `gen`: the account's credential generation when the token was issued (accounts/credentials.py).
REQUIRED_CLAIMS = ("sub", "iss", "aud", "iat", "exp", "gen")
LEEWAY_SECONDS = 10
JWKS_CACHE_SECONDS = 300


class InvalidToken(Exception):
    """The bearer token is missing, malformed, forged, expired or not meant for us. Never carries the token."""


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    generation: int = 0
    # An API key's scopes (accounts/keys.py) and id; a token's are None: it may do everything.
    scopes: frozenset[str] | None = None
    key_id: str = ""


def key_thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP key: a `kid` that changes exactly when the key does."""
    canonical = json.dumps({name: public_jwk[name] for name in ("crv", "kty", "x")}, separators=(",", ":"),
                           sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, private_key_pem: str, *, issuer: str, audience: str, ttl_seconds: int,
                 key_id: str = "") -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("JWT_PRIVATE_KEY must be an Ed25519 private key (PEM, PKCS#8)")
        self._private_key = key
        public_jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
        self.key_id = key_id or key_thumbprint(public_jwk)
        self._public_jwk = {**public_jwk, "kid": self.key_id, "alg": ALGORITHM, "use": "sig"}
        self.issuer, self.audience, self.ttl_seconds = issuer, audience, ttl_seconds

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._public_jwk]}

    def issue(self, subject: str, email: str, generation: int) -> str:
        issued_at = int(time.time())
        claims = {"sub": subject, "email": email, "iss": self.issuer, "aud": self.audience, "iat": issued_at,
                  "nbf": issued_at, "exp": issued_at + self.ttl_seconds, "jti": uuid.uuid4().hex, "gen": generation}
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.key_id})


class TokenVerifier:
    def __init__(self, jwks_url: str, *, issuer: str, audience: str) -> None:
        # PyJWKClient caches the key set and refetches it once when it meets an unknown kid (key rotation).
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=5)
        self.issuer, self.audience = issuer, audience

    def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
            signing_key = self._jwks.get_signing_key(str(header.get("kid", "")))
            claims = jwt.decode(
                token, signing_key.key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": list(REQUIRED_CLAIMS)},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError, ValueError, TypeError) as error:
            raise InvalidToken(type(error).__name__) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("the token names no subject")
        if type(claims["gen"]) is not int:
            raise InvalidToken("the token's credential generation is not a number")
        return Identity(subject=claims["sub"], email=str(claims.get("email", "")), generation=claims["gen"])


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("an `Authorization: Bearer <token>` header is required")
    return token.strip()
