"""Sign-up and login against the accounts table: argon2id password hashes, parameterised SQL only, one answer for
an unknown address and a wrong password, and failed logins throttled so that no one can lock the owner out
(login_throttle.py)."""

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

from accounts.login_throttle import LoginLimits, LoginThrottle, LoginThrottled
from storage import mysql

__all__ = ["LoginLimits", "LoginThrottled"]

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


SIGNED_UP_MESSAGE = ("Log in with this address and password. If the address had an account already, nothing "
                     "changed and its owner was told by email.")


class SignedUp(BaseModel):
    """The answer to `POST /signup` (201), the same whether or not the address had an account: the sign-up tells
    nobody which addresses have one (its owner gets an email instead)."""

    email: str
    message: str = Field(default=SIGNED_UP_MESSAGE, description="What happens next, the same for every sign-up.")


class AccountView(BaseModel):
    """The answer to `GET /account`: the token's account (the `Location` of a sign-up)."""

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


class PasswordChange(BaseModel):
    """The body of `POST /account/password`: the current password, confirmed as a login is, and the new one."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, description="The current password.")
    new_password: Annotated[str, Field(min_length=8, max_length=1024)]


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str


class AccountExists(Exception):
    pass


class LoginRefused(Exception):
    """Unknown address or wrong password: deliberately the same exception, answer and (about) time."""


class Accounts:
    def __init__(self, mysql_url: str, *, login_limits: LoginLimits) -> None:
        self.mysql_url = mysql_url
        self.throttle = LoginThrottle(login_limits)
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

    def log_in(self, credentials: Credentials, address: str) -> Account:
        """The account, if the password is its own and no count of failed logins this attempt falls under is full
        (`address` is the client's); else LoginRefused or LoginThrottled."""
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            self.throttle.check(cursor, credentials.email, address)
            cursor.execute("SELECT id, password_hash FROM accounts WHERE email = %s", (credentials.email,))
            row = cursor.fetchone()
            if row is not None and self._password_matches(row["password_hash"], credentials.password):
                self.throttle.succeeded(cursor, credentials.email, address)
                if PASSWORD_HASHER.check_needs_rehash(row["password_hash"]):
                    cursor.execute("UPDATE accounts SET password_hash = %s WHERE id = %s",
                                   (PASSWORD_HASHER.hash(credentials.password), row["id"]))
                return Account(account_id=str(row["id"]), email=credentials.email)
            if row is None:
                self._password_matches(self._decoy_hash, credentials.password)
            self.throttle.failed(cursor, credentials.email, address)
            raise LoginRefused()

    def confirm(self, account_id: str, email: str, password: str, address: str) -> None:
        """The password of account `account_id` (whose token names `email`), checked as a login is, throttle
        included: raises LoginRefused or LoginThrottled."""
        try:
            account = self.log_in(Credentials(email=email, password=password), address)
        except ValueError:  # not even well-formed: refused like a wrong password
            raise LoginRefused() from None
        if account.account_id != account_id:
            raise LoginRefused()

    def change_password(self, account_id: str, new_password: str) -> None:
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            cursor.execute("UPDATE accounts SET password_hash = %s WHERE id = %s",
                           (PASSWORD_HASHER.hash(new_password), int(account_id)))

    def delete(self, account_id: str, email: str) -> None:
        """The account and every row naming it: its failed logins, the addresses it logged in from, a sign-up
        notice. Its tokens were ended before (accounts/credentials.py)."""
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts WHERE id = %s", (int(account_id),))
            self.throttle.forget(cursor, email)
            cursor.execute("DELETE FROM signup_notices WHERE email = %s", (email,))

    def take_signup_notice(self, email: str) -> bool:
        """Whether the owner of `email` may be told now of a sign-up attempt with it: at most once an hour, so that
        sign-ups cannot flood anyone's inbox. Taken atomically (two at once: one is told)."""
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            changed = cursor.execute(
                "INSERT INTO signup_notices (email, sent_at) VALUES (%s, NOW(3)) ON DUPLICATE KEY UPDATE "
                "sent_at = IF(sent_at < NOW(3) - INTERVAL 1 HOUR, NOW(3), sent_at)", (email,))
            # MySQL counts 1 for an insert, 2 for an update that changed the row, 0 for one that did not.
            return bool(changed)

    @staticmethod
    def _password_matches(password_hash: str, password: str) -> bool:
        try:
            return PASSWORD_HASHER.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError):
            return False
