"""One signed POST of a webhook to a checked address (webhooks/addresses.py), per the Standard Webhooks
specification: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` (one signature per
secret in use; two for a day after a rotation), signed with the `standardwebhooks` package, the same one
receivers verify with."""

from __future__ import annotations

from datetime import datetime

import certifi
import urllib3
from standardwebhooks import Webhook

from webhooks.addresses import Target
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


def host_header(target: Target) -> str:
    default_port = 443 if target.scheme == "https" else 80
    return target.host if target.port == default_port else f"{target.host}:{target.port}"


def post(target: Target, headers: dict[str, str], body: str, timeout_seconds: float) -> Attempt:
    """POSTs to the checked address, presenting the URL's host name (TLS verified against it), following no
    redirect (a 3xx is a failed attempt like any other non-2xx)."""
    address = str(target.address)
    timeout = urllib3.Timeout(total=timeout_seconds)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
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
