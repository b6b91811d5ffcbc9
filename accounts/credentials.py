"""Credential generations: one MongoDB document per account (`credentials`, `_id` = account id) holding the number
every token of the account carries (`gen`). Changing the password advances it and deleting the account ends it, so
the tokens issued before stop working on every function, each of which reads the number by `_id` (every public
function reaches MongoDB; not all reach MySQL) and keeps it for a few seconds at most.

A token whose account has no document, or an ended one, is refused: tokens issued before generations existed
(without `gen`) stop with them, and their owners log in again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo.database import Database

from accounts.recent import RecentReads
from runtime.settings import MongoSettings, TokenVerifierSettings
from storage import mongo

COLLECTION = "credentials"


class CredentialGenerations:
    def __init__(self, database: Database[dict[str, Any]], *, cache_seconds: float = 15) -> None:
        self._collection = database[COLLECTION]
        self._recent: RecentReads[int | None] = RecentReads(cache_seconds)

    @classmethod
    def from_settings(cls, settings: TokenVerifierSettings) -> CredentialGenerations:
        if not isinstance(settings, MongoSettings):
            raise TypeError("a function that verifies tokens reads the credential generations: it needs MongoDB")
        return cls(mongo.database(settings), cache_seconds=settings.credentials_cache_seconds)

    def current(self, account_id: str, *, at_least: int | None = None) -> int | None:
        """The account's generation, None once it has ended (or never began); read at most `cache_seconds` ago, or
        now when the one kept is older than `at_least` (a verified credential of a newer generation: the password
        just changed, and the token it gave must work at once on every function)."""
        generation = self._recent.get(account_id, self._read)
        if at_least is not None and generation is not None and generation < at_least:
            generation = self._read(account_id)
            self._remember(account_id, generation)
        return generation

    def _read(self, account_id: str) -> int | None:
        document = self._collection.find_one({"_id": account_id})
        return None if document is None or document.get("ended") else int(document["generation"])

    def begin(self, account_id: str) -> int:
        """The generation a login's token carries: the current one, or 1 for an account that has none yet. An account
        whose deletion stopped midway (ended here, its MySQL row still there, its password just checked) begins
        again one generation later, so that its owner can log in and ask for the deletion again."""
        document = self._collection.find_one_and_update(
            {"_id": account_id}, {"$setOnInsert": {"generation": 1, "changed_at": datetime.now(UTC)}},
            upsert=True, return_document=pymongo.ReturnDocument.AFTER)
        if document is None or document.get("ended"):
            return self._update(account_id, {"$inc": {"generation": 1}, "$unset": {"ended": ""}})
        generation = int(document["generation"])
        self._remember(account_id, generation)
        return generation

    def advance(self, account_id: str) -> int:
        """A new generation (the password changed): every token, key and link of the one before stops."""
        return self._update(account_id, {"$inc": {"generation": 1}, "$unset": {"ended": ""}})

    def end(self, account_id: str) -> None:
        """The account is being deleted: none of its credentials work any more. The document stays (an account id
        is never given again), holding nothing but the id, a number and a date."""
        self._collection.update_one(
            {"_id": account_id}, {"$set": {"ended": True, "changed_at": datetime.now(UTC)},
                                  "$inc": {"generation": 1}}, upsert=True)
        self._remember(account_id, None)

    def _update(self, account_id: str, change: dict[str, Any]) -> int:
        document = self._collection.find_one_and_update(
            {"_id": account_id}, {**change, "$set": {"changed_at": datetime.now(UTC)}}, upsert=True,
            return_document=pymongo.ReturnDocument.AFTER)
        generation = int(document["generation"]) if document is not None else 1
        self._remember(account_id, generation)
        return generation

    def _remember(self, account_id: str, generation: int | None) -> None:
        self._recent.put(account_id, generation)
