"""Sign-ups per client address per hour, counted in MySQL (`signups_by_address`); refuses with `SignupsThrottled`.

Each sign-up takes a slot with one atomic upsert that answers this request's own count (MySQL's per-connection
`LAST_INSERT_ID(expr)`), so two concurrent sign-ups from one address can never both take the last slot.
"""

from __future__ import annotations

import flask

from storage import mysql

WINDOW_SECONDS = 3600


class SignupsThrottled(Exception):
    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        super().__init__(f"more than {limit} sign-ups from this address within an hour")
        self.retry_after_seconds = max(1, retry_after_seconds)


def client_address(request: flask.Request, trusted_proxy_hops: int) -> str:
    """The address the outermost of our own proxies saw: the connection's when there are none; otherwise read from
    the right of X-Forwarded-For, where each trusted proxy appended the address it was called from (anything to
    the left of that may be forged by the client)."""
    if trusted_proxy_hops == 0:
        return request.remote_addr or "unknown"
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    forwarded.append(request.remote_addr or "unknown")
    return forwarded[-1 - trusted_proxy_hops] if len(forwarded) > trusted_proxy_hops else forwarded[0]


class SignupLimits:
    def __init__(self, mysql_url: str, *, per_hour: int) -> None:
        self.mysql_url = mysql_url
        self.per_hour = per_hour

    def take(self, address: str) -> None:
        """Counts one sign-up from `address`; SignupsThrottled (nothing counted) past the hour's limit."""
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            # A window that has run out starts again at one; a full one stays full (the count is not raised).
            cursor.execute(
                "INSERT INTO signups_by_address (address, signups, window_start) "
                "VALUES (%s, LAST_INSERT_ID(1), NOW(3)) "
                "ON DUPLICATE KEY UPDATE "
                "signups = LAST_INSERT_ID(IF(window_start < NOW(3) - INTERVAL %s SECOND, 1, "
                "                            IF(signups >= %s, %s + 1, signups + 1))), "
                "window_start = IF(window_start < NOW(3) - INTERVAL %s SECOND, NOW(3), window_start)",
                (address[:45], WINDOW_SECONDS, self.per_hour, self.per_hour, WINDOW_SECONDS))
            cursor.execute("SELECT LAST_INSERT_ID() AS signups, TIMESTAMPDIFF(SECOND, window_start, NOW(3)) AS age "
                           "FROM signups_by_address WHERE address = %s", (address[:45],))
            row = cursor.fetchone()
            if row is not None and row["signups"] > self.per_hour:
                raise SignupsThrottled(self.per_hour, WINDOW_SECONDS - int(row["age"]))
