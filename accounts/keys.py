"""API keys (personal access tokens) in MongoDB's `api_keys`: made and listed by auth, checked by every function as a
bearer credential wherever a token is accepted, each with its scopes.

A key reads `v2m_<16 hex: its id><64 hex: its secret>`: the prefix lets secret scanners match it, the id finds its
document by `_id` (every public function reaches MongoDB), and the secret, 256 random bits shown once, is kept as its
SHA-256 only. A fast hash is enough for a secret that cannot be guessed (it is not a password: no dictionary to try),
and keeps the check cheap on every request. A key carries its account's credential generation (accounts/
credentials.py), so a password change or the account's deletion ends it with the tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pymongo.database import Database

from accounts.recent import RecentReads
from runtime.settings import MongoSettings, TokenVerifierSettings
from storage import mongo

COLLECTION = "api_keys"
PREFIX = "v2m_"
KEY_PATTERN = re.compile(r"^v2m_([0-9a-f]{16})([0-9a-f]{64})$")
Scope = Literal["convert", "read", "delete", "webhooks"]
SCOPES: tuple[Scope, ...] = ("convert", "read", "delete", "webhooks")
MAX_KEYS_PER_ACCOUNT = 20
# `last_used_at` is written at most this often per key: a script's every request need not be a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class KeyRequest(BaseModel):
    """The body of `POST /keys`."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
    scopes: list[Scope] = Field(min_length=1, description="What the key may do: `convert` (upload, cancel), "
                                                          "`read` (job views, downloads), `delete` (jobs), "
                                                          "`webhooks` (endpoints).")
    expires_in_days: int | None = Field(default=90, ge=1, le=366, description="None: the key never expires.")


class KeyView(BaseModel):
    """A key as `GET /keys` lists it: never its secret."""

    id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKey(KeyView):
    """The answer to `POST /keys` (201): the key itself, shown this once."""

    key: str = Field(description="`v2m_...`: send it as `Authorization: Bearer <key>`. Shown only now.")


class TooManyKeys(Exception):
    pass


class ApiKey(BaseModel):
    """A verified key: whose it is, in which credential generation, and what it may do."""

    id: str
    owner_id: str
    generation: int
    scopes: frozenset[str]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_a_key(credential: str) -> bool:
    return credential.startswith(PREFIX)


def view_of(document: dict[str, Any]) -> KeyView:
    return KeyView(id=document["_id"], name=document["name"], scopes=document["scopes"],
                   created_at=document["created_at"], last_used_at=document.get("last_used_at"),
                   expires_at=document.get("expires_at"))


class ApiKeys:
    def __init__(self, database: Database[dict[str, Any]], *, cache_seconds: float = 15) -> None:
        self._collection = database[COLLECTION]
        # A revoked key stops within `cache_seconds`.
        self._recent: RecentReads[dict[str, Any] | None] = RecentReads(cache_seconds)

    @classmethod
    def from_settings(cls, settings: TokenVerifierSettings) -> ApiKeys:
        if not isinstance(settings, MongoSettings):
            raise TypeError("a function that verifies tokens reads the API keys: it needs MongoDB")
        return cls(mongo.database(settings), cache_seconds=settings.credentials_cache_seconds)

    def create(self, owner_id: str, generation: int, request: KeyRequest) -> NewKey:
        if self._collection.count_documents({"owner_id": owner_id, "generation": generation}) \
                >= MAX_KEYS_PER_ACCOUNT:
            raise TooManyKeys(f"an account may have {MAX_KEYS_PER_ACCOUNT} keys")
        key_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        created = datetime.now(UTC).replace(microsecond=0)
        document = {"_id": key_id, "owner_id": owner_id, "generation": generation, "name": request.name,
                    "scopes": sorted(set(request.scopes), key=SCOPES.index), "secret_sha256": digest(secret),
                    "created_at": created, "last_used_at": None,
                    "expires_at": created + timedelta(days=request.expires_in_days)
                    if request.expires_in_days is not None else None}
        self._collection.insert_one(document)
        return NewKey(**view_of(document).model_dump(), key=f"{PREFIX}{key_id}{secret}")

    def list(self, owner_id: str, generation: int) -> list[KeyView]:
        """The keys of the account's current credential `generation`: those a password change ended are not
        listed (nor counted against the limit), since they work no more."""
        return [view_of(document) for document in
                sorted(self._collection.find({"owner_id": owner_id, "generation": generation}),
                       key=lambda document: document["created_at"])]

    def delete_ended(self, owner_id: str, generation: int) -> None:
        """Removes the keys of generations before `generation` (a password change ended them)."""
        self._collection.delete_many({"owner_id": owner_id, "generation": {"$lt": generation}})

    def revoke(self, owner_id: str, key_id: str) -> bool:
        revoked = self._collection.delete_one({"_id": key_id, "owner_id": owner_id}).deleted_count == 1
        if revoked:
            self._recent.put(key_id, None)
        return revoked

    def delete_owned(self, owner_id: str) -> None:
        self._collection.delete_many({"owner_id": owner_id})

    def verify(self, credential: str) -> ApiKey | None:
        """The key `credential` is, if it exists, is not expired and its secret matches; else None. Its use is
        recorded (at most once a minute)."""
        matched = KEY_PATTERN.match(credential)
        if matched is None:
            return None
        key_id, secret = matched.groups()
        document = self._recent.get(key_id, lambda key: self._collection.find_one({"_id": key}))
        if document is None or not hmac.compare_digest(document["secret_sha256"], digest(secret)):
            return None
        now = datetime.now(UTC)
        if document.get("expires_at") is not None and document["expires_at"] <= now:
            return None
        last_used = document.get("last_used_at")
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            # Conditional: many processes seeing the same stale time write once between them.
            self._collection.update_one({"_id": key_id, "last_used_at": last_used}, {"$set": {"last_used_at": now}})
            document["last_used_at"] = now
        return ApiKey(id=key_id, owner_id=document["owner_id"], generation=int(document["generation"]),
                      scopes=frozenset(document["scopes"]))
