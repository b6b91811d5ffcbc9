"""Failed logins, throttled so that no one can lock an account's owner out (`LoginThrottle`, in MySQL's
`failed_logins` and `login_addresses`).

Failures are counted per window (LOGIN_FAILURE_WINDOW_SECONDS, 15 min) three ways, and a login is refused (429,
with the window's rest as Retry-After) before its password is checked when one count is full:
- an account from one client address (LOGIN_MAX_FAILURES, 5): guessing one account's password from one place. Its
  owner, logging in from anywhere else, is not affected;
- one client address over every account (LOGIN_MAX_FAILURES_PER_ADDRESS, 50): spraying a few common passwords over
  many accounts from one place;
- an account from every address (LOGIN_MAX_FAILURES_PER_ACCOUNT, 100): guessing one account's password from many
  places. It refuses only addresses the account has not logged in from within KNOWN_ADDRESS_DAYS: the owner keeps
  logging in from where they did before, however many addresses guess.
An address that no account has is counted alike, so throttling tells nobody which addresses have accounts. A login
that succeeds clears its account's count from that address and remembers the address for the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How long an address the owner logged in from stays known (and a row of `login_addresses` is kept).
KNOWN_ADDRESS_DAYS = 30
# The longest client address kept (an IPv6 address in text).
ADDRESS_CHARS = 45


class LoginThrottled(Exception):
    def __init__(self, retry_after_seconds: int, limit: str) -> None:
        super().__init__(f"too many failed logins ({limit})")
        self.retry_after_seconds = max(1, retry_after_seconds)
        self.limit = limit


@dataclass(frozen=True)
class LoginLimits:
    per_account_and_address: int = 5
    per_address: int = 50
    per_account: int = 100
    window_seconds: int = 900


@dataclass(frozen=True)
class LoginThrottle:
    """Runs on the caller's cursor, in the login's own connection."""

    limits: LoginLimits

    def check(self, cursor: Any, email: str, address: str) -> None:
        """LoginThrottled when a count this attempt falls under is full."""
        address = address[:ADDRESS_CHARS]
        cursor.execute(
            "SELECT email, address, failures, TIMESTAMPDIFF(SECOND, window_start, NOW(3)) AS age FROM failed_logins "
            "WHERE (email = %s AND address IN (%s, '')) OR (email = '' AND address = %s)", (email, address, address))
        counts = {(row["email"] != "", row["address"] != ""): row for row in cursor.fetchall()
                  if row["age"] < self.limits.window_seconds}
        for key, limit, name in (((False, True), self.limits.per_address, "login_max_failures_per_address"),
                                 ((True, True), self.limits.per_account_and_address, "login_max_failures"),
                                 ((True, False), self.limits.per_account, "login_max_failures_per_account")):
            row = counts.get(key)
            if row is None or row["failures"] < limit:
                continue
            if key == (True, False) and self.is_known(cursor, email, address):
                continue
            raise LoginThrottled(self.limits.window_seconds - int(row["age"]), name)

    def is_known(self, cursor: Any, email: str, address: str) -> bool:
        cursor.execute("SELECT 1 FROM login_addresses WHERE email = %s AND address = %s "
                       "AND last_login > NOW(3) - INTERVAL %s DAY", (email, address, KNOWN_ADDRESS_DAYS))
        return cursor.fetchone() is not None

    def failed(self, cursor: Any, email: str, address: str) -> None:
        """Counts a failure three ways; a window that has run out starts again at one."""
        address = address[:ADDRESS_CHARS]
        window = self.limits.window_seconds
        cursor.execute(
            "INSERT INTO failed_logins (email, address, failures, window_start) "
            "VALUES (%s, %s, 1, NOW(3)), (%s, '', 1, NOW(3)), ('', %s, 1, NOW(3)) "
            "ON DUPLICATE KEY UPDATE "
            "failures = IF(window_start < NOW(3) - INTERVAL %s SECOND, 1, failures + 1), "
            "window_start = IF(window_start < NOW(3) - INTERVAL %s SECOND, NOW(3), window_start)",
            (email, address, email, address, window, window))

    def succeeded(self, cursor: Any, email: str, address: str) -> None:
        address = address[:ADDRESS_CHARS]
        cursor.execute("DELETE FROM failed_logins WHERE email = %s AND address = %s", (email, address))
        cursor.execute("INSERT INTO login_addresses (email, address, last_login) VALUES (%s, %s, NOW(3)) "
                       "ON DUPLICATE KEY UPDATE last_login = NOW(3)", (email, address))

    @staticmethod
    def forget(cursor: Any, email: str) -> None:
        """Every row naming the account (its deletion)."""
        cursor.execute("DELETE FROM failed_logins WHERE email = %s", (email,))
        cursor.execute("DELETE FROM login_addresses WHERE email = %s", (email,))
