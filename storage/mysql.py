"""Connections to the accounts database (MySQL protocol) from a `mysql://user:password@host:port/database` URL."""

from __future__ import annotations

import urllib.parse

import pymysql
import pymysql.cursors


def connect(url: str) -> pymysql.connections.Connection[pymysql.cursors.DictCursor]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "mysql" or not parts.hostname:
        raise ValueError("MYSQL_URL must look like mysql://user:password@host:port/database")
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""), database=parts.path.lstrip("/"),
        connect_timeout=5, read_timeout=30, write_timeout=30, autocommit=True, charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
    )


def owner_email(url: str, owner_id: str) -> str | None:
    """The email address of account `owner_id`, or None when there is no such account."""
    if not (owner_id.isascii() and owner_id.isdigit()):
        return None
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT email FROM accounts WHERE id = %s", (int(owner_id),))
        row = cursor.fetchone()
    return str(row["email"]) if row else None


def apply_schema(url: str, schema_sql: str) -> None:
    """Runs each statement of an idempotent schema file (CREATE ... IF NOT EXISTS)."""
    statements = [part.strip() for part in schema_sql.split(";") if part.strip()]
    with connect(url) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
