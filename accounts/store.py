"""Sign-up and login against the accounts table: argon2id password hashes, parameterised SQL only, one answer for
an unknown address and a wrong password, and throttling of failed logins per address."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pymysql
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from storage import mysql

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
EMAIL_PATTERN = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]{1,189}\.[^@\s\x00-\x1f.]{1,63}$")
# OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane.
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1,
                                 hash_len=RFC_9106_LOW_MEMORY.hash_len, salt_len=RFC_9106_LOW_MEMORY.salt_len)


def normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_PATTERN.match(value):
        raise ValueError("not an email address")
    return value


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    # The pattern is checked after trimming and lower-casing (normalise_email); the schema shows it to clients.
    email: Annotated[str, Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN.pattern}),
                     AfterValidator(normalise_email)]
    password: Annotated[str, Field(min_length=8, max_length=1024)]


class SignedUp(BaseModel):
    """The answer to `POST /signup` (201)."""

    account_id: str
    email: str


class AccessToken(BaseModel):
    """The answer to `POST /login`: a bearer token for every other function (OAuth 2.0's token answer)."""

    access_token: str = Field(description="An EdDSA JWT; send it as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the token scheme's name, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


class PasswordConfirmation(BaseModel):
    """The body of `DELETE /account`."""

    password: str = Field(min_length=1)


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str


class AccountExists(Exception):
    pass


class LoginRefused(Exception):
    """Unknown address or wrong password: deliberately the same exception, answer and (about) time."""


class LoginThrottled(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after_seconds = retry_after_seconds


class Accounts:
    def __init__(self, mysql_url: str, *, max_failures: int, failure_window_seconds: int) -> None:
        self.mysql_url = mysql_url
        self.max_failures = max_failures
        self.window = failure_window_seconds
        # Verified against when the address is unknown, so both refusals cost one argon2 verification.
        self._decoy_hash = PASSWORD_HASHER.hash(secrets.token_urlsafe(16))

    def apply_schema(self) -> None:
        mysql.apply_schema(self.mysql_url, SCHEMA_FILE.read_text())

    def sign_up(self, credentials: Credentials) -> Account:
        password_hash = PASSWORD_HASHER.hash(credentials.password)
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            try:
                cursor.execute("INSERT INTO accounts (email, password_hash) VALUES (%s, %s)",
                               (credentials.email, password_hash))
            except pymysql.err.IntegrityError:
                raise AccountExists(credentials.email) from None
            return Account(account_id=str(cursor.lastrowid), email=credentials.email)

    def log_in(self, credentials: Credentials) -> Account:
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT failures, TIMESTAMPDIFF(SECOND, window_start, NOW(3)) AS age FROM login_failures "
                "WHERE email = %s", (credentials.email,))
            throttle = cursor.fetchone()
            if throttle and throttle["failures"] >= self.max_failures and throttle["age"] < self.window:
                raise LoginThrottled(max(1, self.window - int(throttle["age"])))
            cursor.execute("SELECT id, password_hash FROM accounts WHERE email = %s", (credentials.email,))
            row = cursor.fetchone()
            if row is not None and self._password_matches(row["password_hash"], credentials.password):
                cursor.execute("DELETE FROM login_failures WHERE email = %s", (credentials.email,))
                if PASSWORD_HASHER.check_needs_rehash(row["password_hash"]):
                    cursor.execute("UPDATE accounts SET password_hash = %s WHERE id = %s",
                                   (PASSWORD_HASHER.hash(credentials.password), row["id"]))
                return Account(account_id=str(row["id"]), email=credentials.email)
            if row is None:
                self._password_matches(self._decoy_hash, credentials.password)
            # A window that has run out starts again at one failure.
            cursor.execute(
                "INSERT INTO login_failures (email, failures, window_start) VALUES (%s, 1, NOW(3)) "
                "ON DUPLICATE KEY UPDATE "
                "failures = IF(window_start < NOW(3) - INTERVAL %s SECOND, 1, failures + 1), "
                "window_start = IF(window_start < NOW(3) - INTERVAL %s SECOND, NOW(3), window_start)",
                (credentials.email, self.window, self.window))
            raise LoginRefused()

    def confirm(self, account_id: str, email: str, password: str) -> None:
        """The password of account `account_id` (whose token names `email`), checked as a login is, throttle
        included: raises LoginRefused or LoginThrottled."""
        try:
            account = self.log_in(Credentials(email=email, password=password))
        except ValueError:  # not even well-formed: refused like a wrong password
            raise LoginRefused() from None
        if account.account_id != account_id:
            raise LoginRefused()

    def delete(self, account_id: str, email: str) -> None:
        """The account and every row naming it: its login-throttle row. Tokens are not stored (no server-side
        sessions): those already issued are refused by nothing but their expiry."""
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts WHERE id = %s", (int(account_id),))
            cursor.execute("DELETE FROM login_failures WHERE email = %s", (email,))

    @staticmethod
    def _password_matches(password_hash: str, password: str) -> bool:
        try:
            return PASSWORD_HASHER.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError):
            return False
