"""Talks to each data store of the running stack as the functions do: GridFS on FerretDB (MONGO_URI), MariaDB
through pymysql as the application user (MYSQL_URL), and RabbitMQ through pika (AMQP_URL)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import gridfs
import pika
import pymongo
import pymysql
import pytest

from stack.config import server_urls
from stack.servers import FERRETDB_DIR
from tests.support import mysql_connect, wait_for

pytestmark = pytest.mark.stack

MIB = 1024 * 1024
# Above MongoDB's 16 MB document limit, so only GridFS's chunking can store it.
LARGE_FILE_BYTES = 20 * MIB


@pytest.fixture
def mongo_database(endpoints: dict[str, str]) -> Iterator[Any]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(endpoints["MONGO_URI"],
                                                                      serverSelectionTimeoutMS=5000)
    name = f"test_gridfs_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def test_gridfs_round_trip_of_a_file_larger_than_16_mb(mongo_database: Any) -> None:
    bucket = gridfs.GridFSBucket(mongo_database)
    written = hashlib.sha256()
    with bucket.open_upload_stream("large.bin", metadata={"test": True}) as upload:
        for _ in range(LARGE_FILE_BYTES // MIB):
            piece = os.urandom(MIB)
            written.update(piece)
            upload.write(piece)
    read = hashlib.sha256()
    with bucket.open_download_stream(upload._id) as download:
        assert download.length == LARGE_FILE_BYTES
        while piece := download.read(MIB):
            read.update(piece)
    assert read.hexdigest() == written.hexdigest()
    chunks = mongo_database["fs.chunks"].count_documents({"files_id": upload._id})
    assert chunks == -(-LARGE_FILE_BYTES // upload.chunk_size)
    print(f"\nGridFS on FerretDB: {LARGE_FILE_BYTES // MIB} MiB in {chunks} chunks, identical sha256")


@pytest.fixture
def mysql(endpoints: dict[str, str]) -> Iterator[pymysql.connections.Connection]:
    connection = mysql_connect(endpoints["MYSQL_URL"])
    yield connection
    connection.close()


def test_mariadb_answers_the_application_user(mysql: pymysql.connections.Connection) -> None:
    with mysql.cursor() as cursor:
        cursor.execute("SELECT 1, CURRENT_USER(), VERSION()")
        row = cursor.fetchone()
    assert row is not None
    one, user, version = row
    assert one == 1
    assert user.startswith("vid2mp3@")
    assert "MariaDB" in version


def test_accounts_schema_is_migrated(mysql: pymysql.connections.Connection) -> None:
    """`make up` applies accounts/schema.sql: the functions can count on the accounts table."""
    with mysql.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = 'accounts'")
        columns = {column for (column,) in cursor.fetchall()}
    assert {"id", "email", "password_hash", "created_at"} <= columns


@pytest.fixture
def amqp_channel(endpoints: dict[str, str]) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(endpoints["AMQP_URL"]))
    yield connection.channel()
    connection.close()


def test_quorum_queue_can_be_declared(endpoints: dict[str, str], amqp_channel: Any) -> None:
    queue = f"test.quorum.{uuid.uuid4().hex[:12]}"
    amqp_channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        assert amqp_channel.queue_declare(queue, passive=True).method.queue == queue
        # RabbitMQ refuses to redeclare a queue with another type: proof that it is a quorum queue.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            amqp_channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
        assert refused.value.reply_code == 406
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(endpoints["AMQP_URL"]))
        connection.channel().queue_delete(queue)
        connection.close()


def test_broker_exchange_is_a_headers_exchange(endpoints: dict[str, str], amqp_channel: Any) -> None:
    exchange = endpoints["BROKER_EXCHANGE"]
    amqp_channel.exchange_declare(exchange, passive=True)  # exists, or the broker closes the channel (404)
    # Declaring it again as it was declared is accepted; as another type is refused (406, exchange untouched).
    amqp_channel.exchange_declare(exchange, exchange_type="headers", durable=True, auto_delete=False)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        amqp_channel.exchange_declare(exchange, exchange_type="topic", durable=True, auto_delete=False)
    assert refused.value.reply_code == 406


def test_local_ferretdb_answers_id_lookups_from_an_index(mongo_database: Any) -> None:
    """FerretDB on SQLite looks a document up by `_id` with an expression its own `_id` index is not built on;
    stack/ferretdb adds one that is (idindex.go). Without it, reading a GridFS chunk passes over every chunk."""
    if server_urls().mongo_given:
        pytest.skip("MongoDB is given by VID2MP3_MONGO_URI: not the local FerretDB")
    mongo_database["media.chunks"].insert_one({"_id": "f/0", "files_id": "f", "n": 0, "data": b"x"})
    sqlite_file = FERRETDB_DIR / "sqlite" / f"{mongo_database.name}.sqlite"

    def id_lookup_plan() -> str:
        with contextlib.closing(sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)) as connection:
            (table,) = connection.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?",
                                          ("media.chunks",)).fetchone()
            # The statement FerretDB v1.24.2 runs for find({_id: <string>}) (backends/sqlite/collection.go).
            query = f"""EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "{table}" WHERE _ferretdb_sjson->'$._id' = ?"""  # noqa: S608
            plan = connection.execute(query, ('"f/0"',)).fetchall()
        return " ".join(str(row[-1]) for row in plan)

    plan = wait_for(lambda: "USING INDEX" in id_lookup_plan() and id_lookup_plan(), 10,
                    "an index on FerretDB's _id lookup")
    print(f"\nFerretDB's _id lookup on SQLite: {plan}")
    assert mongo_database["media.chunks"].find_one({"_id": "f/0"})["data"] == b"x"
