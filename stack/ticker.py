"""The local stand-in for the PingSource: POSTs a `dev.knative.sources.ping` CloudEvent to a URL every N seconds.

Usage: python -m stack.ticker PINGSOURCE_NAME URL SECONDS
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent


def main() -> None:
    name, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    session = requests.Session()
    while True:
        time.sleep(seconds)
        event = CloudEvent({
            "type": "dev.knative.sources.ping",
            "source": f"/apis/v1/namespaces/vid2mp3/pingsources/{name}",
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(),
        }, {})
        headers, body = to_binary(event)
        try:
            session.post(url, headers=headers, data=body, timeout=120)
        except requests.RequestException as error:
            print(f"ticker: {url}: {error}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
