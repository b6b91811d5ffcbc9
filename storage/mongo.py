"""One MongoDB client per process, shared by every request (pymongo pools connections and is thread-safe)."""

from __future__ import annotations

import functools
from typing import Any

import pymongo
from pymongo.database import Database

from runtime.settings import MongoSettings


@functools.cache
def _client(uri: str) -> pymongo.MongoClient[dict[str, Any]]:
    # Fail a request within seconds when the database is away, instead of hanging past the caller's timeout.
    # connect=False: no connection (or monitor thread) until first use, which comes after gunicorn forks its worker.
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=60000,
                               tz_aware=True, connect=False)


def database(settings: MongoSettings) -> Database[dict[str, Any]]:
    return _client(settings.mongo_uri.get_secret_value())[settings.mongo_database]
