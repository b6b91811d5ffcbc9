"""Private podcast feed addresses in MongoDB's `feeds`: one per account and credential generation, made on demand by
the download function (`GET /feed`), replaced by `POST /feed/rotate`, and looked up when a podcast app polls it.

The address ends in `<16 hex: the feed's id><64 hex: its secret>`, 256 random bits that nobody can guess. Unlike an
API key's, the secret is kept as it is, not hashed: the owner must be able to see the address again (a second
device, a new podcast app) and the feed names nothing the database does not already hold (its MP3s are in GridFS
beside it), so a reader of the database learns nothing more from it (README, "A private podcast feed";
docs/OPERATIONS.md). The id finds the document
through an index; the secret is compared in constant time.

An address carries its account's credential generation (accounts/credentials.py): a password change ends it as it
ends tokens, keys and links (the owner asks for the new one), and so does the account's deletion. A rotation
replaces the id and the secret in place, so the old address finds nothing from that moment, on every instance: the
lookup is never cached.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from pydantic import BaseModel, Field
from pymongo.database import Database

COLLECTION = "feeds"
ADDRESS_PATTERN = re.compile(r"^([0-9a-f]{16})([0-9a-f]{64})$")


class FeedView(BaseModel):
    """The answer to `GET /feed` and `POST /feed/rotate`."""

    url: str = Field(description="The private RSS feed: give it to a podcast app. Whoever has it can listen to "
                                 "your MP3s, so keep it like a password; `POST /feed/rotate` replaces it.")
    created_at: datetime


@dataclass(frozen=True)
class Feed:
    """A verified feed address: whose it is and in which credential generation it was made."""

    owner_id: str
    generation: int
    created_at: datetime


def fresh_address() -> dict[str, Any]:
    return {"feed_id": secrets.token_hex(8), "secret": secrets.token_hex(32),
            "created_at": datetime.now(UTC).replace(microsecond=0)}


class Feeds:
    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._collection = database[COLLECTION]

    def ensure_indexes(self) -> None:
        self._collection.create_index([("feed_id", pymongo.ASCENDING)], unique=True)

    def address_of(self, owner_id: str, generation: int) -> tuple[str, datetime]:
        """The account's feed address (`<id><secret>`) in this generation, made now if it has none; and when it was
        made. Addresses of earlier generations are dropped (they stopped working already)."""
        query = {"_id": f"{owner_id}:{generation}"}
        try:
            self._collection.update_one(
                query, {"$setOnInsert": {"owner_id": owner_id, "generation": generation, **fresh_address()}},
                upsert=True)
        except pymongo.errors.DuplicateKeyError:  # made at the same moment by another request: that one stands
            pass
        document = self._collection.find_one(query)
        if document is None:  # deleted (the account with it) between the two steps
            raise LookupError(f"account {owner_id} has no feed")
        self._collection.delete_many({"owner_id": owner_id, "generation": {"$ne": generation}})
        return f"{document['feed_id']}{document['secret']}", document["created_at"]

    def rotate(self, owner_id: str, generation: int) -> tuple[str, datetime]:
        """A new address in place of the old, which stops at once."""
        self._collection.update_one(
            {"_id": f"{owner_id}:{generation}"},
            {"$set": fresh_address(), "$setOnInsert": {"owner_id": owner_id, "generation": generation}},
            upsert=True)
        return self.address_of(owner_id, generation)

    def delete_owned(self, owner_id: str) -> None:
        self._collection.delete_many({"owner_id": owner_id})

    def find(self, address: str) -> Feed | None:
        """The feed `address` names, if it exists and its secret matches; else None. Whether its generation is still
        the account's is the caller's to check."""
        matched = ADDRESS_PATTERN.match(address)
        if matched is None:
            return None
        feed_id, secret = matched.groups()
        document = self._collection.find_one({"feed_id": feed_id})
        if document is None or not hmac.compare_digest(document["secret"], secret):
            return None
        return Feed(owner_id=document["owner_id"], generation=int(document["generation"]),
                    created_at=document["created_at"])
