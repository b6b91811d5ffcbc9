"""One signed POST of a webhook to a checked address (runtime/addresses.py), per the Standard Webhooks
specification: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` (one signature per
secret in use; two for a day after a rotation), signed with the `standardwebhooks` package, the same one
receivers verify with."""

from __future__ import annotations

from datetime import datetime

import urllib3
from standardwebhooks import Webhook

from runtime.addresses import Target, connection_pool, host_header
from webhooks.store import Attempt

USER_AGENT = "vid2mp3-webhooks/1"
# Enough of an answer to see its status; the body is not needed and is never stored.
MAX_ANSWER_BYTES = 64 * 1024


def signed_headers(message_id: str, body: str, signing_secrets: list[str], moment: datetime) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(message_id, moment, body) for secret in signing_secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def post(target: Target, headers: dict[str, str], body: str, timeout_seconds: float) -> Attempt:
    """POSTs to the checked address, presenting the URL's host name (TLS verified against it), following no
    redirect (a 3xx is a failed attempt like any other non-2xx)."""
    pool = connection_pool(target, urllib3.Timeout(total=timeout_seconds))
    try:
        answer = pool.urlopen("POST", target.path, body=body.encode(), redirect=False, retries=False,
                              headers={**headers, "Host": host_header(target)}, preload_content=False)
        answer.read(MAX_ANSWER_BYTES)
        answer.release_conn()
        return Attempt(status=answer.status)
    except urllib3.exceptions.HTTPError as error:
        return Attempt(status=None, error=f"{type(error).__name__}: no answer from the receiver")
    finally:
        pool.close()
