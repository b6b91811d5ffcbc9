"""Starts RabbitMQ, MariaDB and FerretDB as project-local servers (or uses the ones given by URL) and waits for them."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pika
import pymongo
import pymysql

from stack import processes
from stack.config import (
    ACCOUNTS_SCHEMA,
    AMQP_PORT,
    BIN,
    DATA,
    HOST,
    LOGS,
    MONGO_PORT,
    MYSQL_DATABASE,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    RABBITMQ_DIST_PORT,
    RABBITMQ_NODE,
    RUN,
)
from stack.processes import StackError
from storage import mysql

READY_TIMEOUT_SECONDS = 60


def require_program(program: str) -> str:
    found = shutil.which(program) or (str(BIN / program) if (BIN / program).exists() else None)
    if not found:
        raise StackError(f"{program} is not installed: run `make setup` first")
    return found


def refuse_foreign_port(port: int, name: str) -> None:
    if processes.port_open(port):
        raise StackError(
            f"port {port} (for {name}) is in use by a program this stack did not start: stop it, or move the "
            f"stack with VID2MP3_PORT_BASE=<another base> (now ports {port - port % 1000}..{port - port % 1000 + 999})"
        )


# --- RabbitMQ ---------------------------------------------------------------------------------------------------

RABBITMQ_DIR = DATA / "rabbitmq"
RABBITMQ_PID = RABBITMQ_DIR / "rabbitmq.pid"


def amqp_answers(url: str) -> bool:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1&socket_timeout=2"))
    except Exception:
        return False
    connection.close()
    return True


def queue_has_consumer(url: str, queue: str) -> bool:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1&socket_timeout=2"))
    except Exception:
        return False
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count > 0
    except Exception:
        return False
    finally:
        if connection.is_open:
            connection.close()


def rabbitmq_env() -> dict[str, str]:
    return {
        "RABBITMQ_MNESIA_BASE": str(RABBITMQ_DIR / "mnesia"),
        "RABBITMQ_LOG_BASE": str(LOGS / "rabbitmq"),
        "RABBITMQ_NODENAME": RABBITMQ_NODE,
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(AMQP_PORT),
        "RABBITMQ_DIST_PORT": str(RABBITMQ_DIST_PORT),
        "RABBITMQ_PID_FILE": str(RABBITMQ_PID),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(RABBITMQ_DIR / "enabled_plugins"),
    }


def rabbitmqctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_program("rabbitmqctl"), "-n", RABBITMQ_NODE, *args],
        capture_output=True, text=True, timeout=timeout, env={**rabbitmq_env(), "PATH": "/usr/sbin:/usr/bin:/bin"},
    )


def own_rabbitmq_running() -> bool:
    return RABBITMQ_PID.exists() and rabbitmqctl("status", timeout=20).returncode == 0


def start_rabbitmq(url: str, given: bool) -> str:
    """Returns what happened: 'given', 'running' or 'started'."""
    if given:
        if not amqp_answers(url):
            raise StackError(f"RabbitMQ given by VID2MP3_AMQP_URL does not answer at {redact(url)}")
        return "given"
    if amqp_answers(url):
        if RABBITMQ_PID.exists():
            return "running"
        raise StackError(f"something else answers AMQP on port {AMQP_PORT}: stop it or set VID2MP3_PORT_BASE")
    refuse_foreign_port(AMQP_PORT, "RabbitMQ")
    server = require_program("rabbitmq-server")
    for folder in (RABBITMQ_DIR, LOGS / "rabbitmq"):
        folder.mkdir(parents=True, exist_ok=True)
    (RABBITMQ_DIR / "enabled_plugins").write_text("[].\n")
    # The Debian wrapper drops privileges to the rabbitmq user, who must own the data and log folders.
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(RABBITMQ_DIR), str(LOGS / "rabbitmq")], check=True)
    result = subprocess.run([server, "-detached"], env={**rabbitmq_env(), "PATH": "/usr/sbin:/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise StackError(f"rabbitmq-server did not start: {result.stderr or result.stdout}")
    waited = rabbitmqctl("wait", str(RABBITMQ_PID), "--timeout", str(READY_TIMEOUT_SECONDS),
                         timeout=READY_TIMEOUT_SECONDS + 10)
    if waited.returncode != 0:
        raise StackError(f"RabbitMQ did not come up: {waited.stderr or waited.stdout}; logs in {LOGS / 'rabbitmq'}")
    processes.wait_until(lambda: amqp_answers(url), "RabbitMQ (AMQP)", READY_TIMEOUT_SECONDS)
    return "started"


def stop_rabbitmq() -> bool:
    if not RABBITMQ_PID.exists():
        return False
    rabbitmqctl("stop", str(RABBITMQ_PID), timeout=60)
    RABBITMQ_PID.unlink(missing_ok=True)
    return True


# --- MariaDB ----------------------------------------------------------------------------------------------------

MARIADB_DIR = DATA / "mariadb"
MARIADB_SOCKET = RUN / "mariadb.sock"


def mysql_answers(url: str) -> bool:
    try:
        mysql.connect(url).close()
    except pymysql.MySQLError:
        return False
    return True


def start_mariadb(url: str, given: bool) -> str:
    if given:
        if not mysql_answers(url):
            raise StackError(f"MySQL given by VID2MP3_MYSQL_URL does not answer at {redact(url)}")
        return "given"
    if processes.running_pid("mariadb"):
        return "running"
    refuse_foreign_port(MYSQL_PORT, "MariaDB")
    server = require_program("mariadbd")
    data = MARIADB_DIR / "data"
    if not (data / "mysql").exists():
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [require_program("mariadb-install-db"), f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )
    processes.start("mariadb", [
        server, "--no-defaults", f"--datadir={data}", f"--socket={MARIADB_SOCKET}", f"--port={MYSQL_PORT}",
        f"--bind-address={HOST}", "--user=root", f"--pid-file={MARIADB_DIR / 'mariadb.pid'}",
        "--max-connections=500", "--innodb-buffer-pool-size=64M",
    ])
    processes.wait_until(lambda: _root_connect().open, "MariaDB", READY_TIMEOUT_SECONDS, name="mariadb")
    with _root_connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{MYSQL_DATABASE}`")
        cursor.execute(f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%%' IDENTIFIED BY %s", (MYSQL_PASSWORD,))
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{MYSQL_DATABASE}`.* TO '{MYSQL_USER}'@'%'")
    processes.wait_until(lambda: mysql_answers(url), "MariaDB (application user over TCP)", READY_TIMEOUT_SECONDS)
    return "started"


def _root_connect() -> pymysql.connections.Connection:
    return pymysql.connect(unix_socket=str(MARIADB_SOCKET), user="root", connect_timeout=2, autocommit=True)


def migrate_accounts(url: str, schema: Path = ACCOUNTS_SCHEMA) -> None:
    """Applies the accounts schema, as the auth function also does at start-up."""
    if schema.exists():
        mysql.apply_schema(url, schema.read_text())


# --- FerretDB ---------------------------------------------------------------------------------------------------

FERRETDB_DIR = DATA / "ferretdb"


def mongo_answers(uri: str) -> bool:
    try:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=1500)
        client.admin.command("ping")
        client.close()
    except pymongo.errors.PyMongoError:
        return False
    return True


def start_ferretdb(uri: str, given: bool) -> str:
    if given:
        if not mongo_answers(uri):
            raise StackError(f"MongoDB given by VID2MP3_MONGO_URI does not answer at {redact(uri)}")
        return "given"
    if processes.running_pid("ferretdb"):
        return "running"
    refuse_foreign_port(MONGO_PORT, "FerretDB")
    (FERRETDB_DIR / "sqlite").mkdir(parents=True, exist_ok=True)
    processes.start("ferretdb", [
        require_program("ferretdb"), f"--sqlite-url=file:{FERRETDB_DIR / 'sqlite'}/",
        f"--listen-addr={HOST}:{MONGO_PORT}", "--log-level=warn",
    ])
    processes.wait_until(lambda: mongo_answers(uri), "FerretDB", READY_TIMEOUT_SECONDS, name="ferretdb")
    return "started"


def redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
