"""Webhooks on the real local stack: endpoints registered through the `webhooks` function, job events delivered by
the `delivery` function (through the broker's Triggers) to receivers that verify every request with the
`standardwebhooks` package, as an integrator's would. Plus the SSRF guard, on real DNS answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from events.catalog import AUDIO_CONVERTED, JOB_EVENT_TYPES, NOTIFICATION_SENT, VIDEO_UPLOADED
from functions.delivery.deliverer import JITTER, next_attempt_time
from runtime.addresses import RefusedAddress, resolve
from runtime.settings import DeliverySettings
from tests.support import Sink, make_clip, new_user, tick_ping_source, wait_for

pytestmark = pytest.mark.stack


class Receiver(Sink):
    """A webhook receiver on 127.0.0.1 (a Sink at a path with a query, as receivers' URLs often have)."""

    def __init__(self, statuses: list[int], delay: float = 0, location: str | None = None) -> None:
        super().__init__(statuses, delay=delay, location=location, path="/hooks?team=7")

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request that verifies with `secret`, as the receiver's code would accept it (raises otherwise)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.requests]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def api(endpoints: dict[str, str], token: str, method: str, path: str = "/", body: Any = None) -> requests.Response:
    return requests.request(method, endpoints["WEBHOOKS_URL"] + path, json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


def register(endpoints: dict[str, str], token: str, url: str, events: list[str]) -> dict[str, Any]:
    answer = api(endpoints, token, "POST", body={"url": url, "events": events})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["secret"].startswith("whsec_") and created["state"] == "enabled"
    return created


def tick(endpoints: dict[str, str]) -> None:
    tick_ping_source(endpoints["DELIVERY_FUNCTION_URL"], "webhook-retries-every-minute")


def delivery_record(stack_database: Any, endpoint_id: str, event_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = stack_database["webhook_deliveries"].find_one({"_id": f"{endpoint_id}/{event_id}"})
    return record


def test_each_event_of_a_job_reaches_the_receiver_once_verified(endpoints: dict[str, str], tmp_path: Path,
                                                               receivers: list[Receiver], stack_database: Any) -> None:
    client, _ = new_user(endpoints)
    receiver = Receiver([200])
    receivers.append(receiver)
    wanted = [VIDEO_UPLOADED, AUDIO_CONVERTED, NOTIFICATION_SENT]
    endpoint = register(endpoints, client.token, receiver.url, wanted)
    job_id = client.upload(make_clip(tmp_path / "clip.mp4", seconds=2))["job_id"]

    wait_for(lambda: len(receiver.requests) >= 3, 60, "three webhooks")
    time.sleep(1)  # room for a duplicate to show up
    received = receiver.verified(endpoint["secret"])
    assert sorted(message["type"] for message in received) == sorted(wanted)
    assert all(message["data"]["job_id"] == job_id for message in received)
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert len(set(ids)) == 3 and all(identifier.startswith(job_id + ".") for identifier in ids)
    assert all(headers["host"] == receiver.url.split("/")[2] for headers, _ in receiver.requests)

    # What a forger or a replayer could send fails verification: a changed body, a moved timestamp, another secret.
    headers, body = receiver.requests[0]
    tampered = body.replace(job_id.encode(), b"f" * 32)
    moved = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)}
    for attempt_body, attempt_headers, secret in ((tampered, headers, endpoint["secret"]),
                                                  (body, moved, endpoint["secret"]),
                                                  (body, headers, "whsec_" + "A" * 44)):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(attempt_body, attempt_headers)

    # The broker delivering an event again (at least once) makes no second webhook.
    converted_id = f"{job_id}.audio-converted"
    (_, original_body) = next(request for request in receiver.requests
                                             if request[0]["webhook-id"] == converted_id)
    event = json.loads(original_body)
    answer = requests.post(endpoints["BROKER_INGRESS_URL"], data=json.dumps(event["data"]), timeout=10, headers={
        "ce-specversion": "1.0", "ce-type": AUDIO_CONVERTED, "ce-source": "/vid2mp3/convert", "ce-id": converted_id,
        "ce-subject": job_id, "content-type": "application/json"})
    assert answer.status_code == 202
    time.sleep(3)
    assert len(receiver.requests) == 3

    shown = api(endpoints, client.token, "GET", f"/{endpoint['id']}").json()
    assert "secret" not in shown
    assert sorted(delivery["event_type"] for delivery in shown["deliveries"]) == sorted(wanted)
    assert all(delivery["state"] == "delivered" and delivery["attempts"][-1]["status"] == 200
               for delivery in shown["deliveries"])


def test_a_failing_receiver_gets_the_event_once_after_retries_and_delays_no_other(
        endpoints: dict[str, str], tmp_path: Path, receivers: list[Receiver], stack_database: Any) -> None:
    client, _ = new_user(endpoints)
    # Slow AND failing: three times 500 after 5 s each, then 200.
    failing, healthy = Receiver([500, 500, 500, 200], delay=5), Receiver([200])
    receivers.extend([failing, healthy])
    bad = register(endpoints, client.token, failing.url, [VIDEO_UPLOADED])
    good = register(endpoints, client.token, healthy.url, [VIDEO_UPLOADED])
    started = time.monotonic()
    job_id = client.upload(make_clip(tmp_path / "clip.mp4", seconds=1))["job_id"]
    event_id = f"{job_id}.video-uploaded"

    wait_for(lambda: healthy.requests, 30, "the healthy receiver's webhook")
    wait_for(lambda: failing.requests, 30, "the failing receiver's first try")
    # Both were attempted at once: the healthy one did not wait for the slow one's 5 s.
    assert abs(healthy.arrived[0] - failing.arrived[0]) < 3, time.monotonic() - started

    delays = DeliverySettings(mongo_uri="mongodb://unused").retry_delays()
    for attempt in (1, 2, 3):
        record = wait_for(lambda attempt=attempt: (lambda r: r if r and len(r.get("history", [])) == attempt else None)(
            delivery_record(stack_database, bad["id"], event_id)), 30, f"attempt {attempt} recorded")
        assert record["state"] == "pending" and record["history"][-1]["status"] == 500
        waited = (record["next_attempt_at"] - record["history"][-1]["at"]).total_seconds()
        assert delays[attempt - 1] * (1 - JITTER) - 1 <= waited <= delays[attempt - 1] * (1 + JITTER) + 1
        # Time passes (minutes to hours on the schedule): the retry comes due, and the PingSource ticks.
        stack_database["webhook_deliveries"].update_one({"_id": record["_id"]},
                                                  {"$set": {"next_attempt_at": datetime.now(UTC)}})
        tick(endpoints)
    record = wait_for(lambda: (lambda r: r if r and r["state"] != "pending" else None)(
        delivery_record(stack_database, bad["id"], event_id)), 30, "the delivery settled")
    assert record["state"] == "delivered" and [entry["status"] for entry in record["history"]] == [500] * 3 + [200]
    assert len(failing.requests) == 4 and len(healthy.requests) == 1
    # Every try was the same message: the same id and bytes, freshly signed.
    assert {headers["webhook-id"] for headers, _ in failing.requests} == {event_id}
    assert len({body for _, body in failing.requests}) == 1
    assert len(failing.verified(bad["secret"])) == 4 and len(healthy.verified(good["secret"])) == 1
    tick(endpoints)
    assert len(failing.requests) == 4


def test_410_disables_the_endpoint_and_a_redirect_is_not_followed(
        endpoints: dict[str, str], tmp_path: Path, receivers: list[Receiver], stack_database: Any) -> None:
    client, _ = new_user(endpoints)
    target = Receiver([200])
    gone, redirecting = Receiver([410]), Receiver([307], location=target.url)
    receivers.extend([target, gone, redirecting])
    gone_endpoint = register(endpoints, client.token, gone.url, list(JOB_EVENT_TYPES))
    redirect_endpoint = register(endpoints, client.token, redirecting.url, [VIDEO_UPLOADED])
    job_id = client.upload(make_clip(tmp_path / "clip.mp4", seconds=1))["job_id"]
    client.follow(job_id, lambda _: None, timeout=60)

    shown = wait_for(lambda: (lambda view: view if view["state"] == "disabled" else None)(
        api(endpoints, client.token, "GET", f"/{gone_endpoint['id']}").json()), 30, "the endpoint disabled")
    assert "410" in shown["disabled_reason"]
    time.sleep(2)
    assert len(gone.requests) == 1, "nothing more is sent once the receiver said 410"

    redirected = f"{job_id}.video-uploaded"
    record = wait_for(lambda: (lambda r: r if r and r.get("history") else None)(
        delivery_record(stack_database, redirect_endpoint["id"], redirected)), 30, "the redirected delivery's try")
    assert record is not None and record["state"] == "pending" and record["history"][0]["status"] == 307
    assert target.requests == []


def test_the_api_checks_requests_whole_and_keeps_endpoints_to_their_owner(endpoints: dict[str, str],
                                                                          receivers: list[Receiver]) -> None:
    owner, _ = new_user(endpoints)
    stranger, _ = new_user(endpoints)
    receiver = Receiver([200])
    receivers.append(receiver)
    assert requests.get(endpoints["WEBHOOKS_URL"] + "/", timeout=10).status_code == 401

    bad = api(endpoints, owner.token, "POST", body={"url": "ftp://x", "events": ["io.vid2mp3.nope.v1"], "x": 1})
    assert bad.status_code == 422
    message = bad.json()["message"]
    assert "url:" in message and "events: unknown io.vid2mp3.nope.v1" in message and "unexpected field" in message
    for url in ("https://169.254.169.254/latest/meta-data", "https://10.1.2.3/", "https://[::ffff:10.0.0.1]/"):
        refused = api(endpoints, owner.token, "POST", body={"url": url, "events": [VIDEO_UPLOADED]})
        assert refused.status_code == 422 and "address" in refused.json()["message"], url

    endpoint = register(endpoints, owner.token, receiver.url, [AUDIO_CONVERTED])
    assert [listed["id"] for listed in api(endpoints, owner.token, "GET").json()["endpoints"]] == [endpoint["id"]]
    assert api(endpoints, stranger.token, "GET").json() == {"endpoints": []}
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/rotate-secret")):
        assert api(endpoints, stranger.token, method, f"/{endpoint['id']}{path}").status_code == 404

    rotated = api(endpoints, owner.token, "POST", f"/{endpoint['id']}/rotate-secret").json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_valid_until"]
    assert api(endpoints, owner.token, "DELETE", f"/{endpoint['id']}").status_code == 204
    assert api(endpoints, owner.token, "GET", f"/{endpoint['id']}").status_code == 404


def test_after_a_rotation_both_secrets_verify_for_a_day(endpoints: dict[str, str], tmp_path: Path,
                                                        receivers: list[Receiver]) -> None:
    client, _ = new_user(endpoints)
    receiver = Receiver([200])
    receivers.append(receiver)
    endpoint = register(endpoints, client.token, receiver.url, [VIDEO_UPLOADED])
    rotated = api(endpoints, client.token, "POST", f"/{endpoint['id']}/rotate-secret").json()
    client.upload(make_clip(tmp_path / "clip.mp4", seconds=1))
    wait_for(lambda: receiver.requests, 30, "the webhook")
    assert len(receiver.verified(endpoint["secret"])) == len(receiver.verified(rotated["secret"])) == 1


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/", "https://localhost/", "https://[::1]/", "https://169.254.169.254/", "https://10.0.0.1/",
    "https://172.16.5.4/", "https://192.168.1.1/", "https://100.64.0.1/", "https://0.0.0.0/", "https://224.0.0.1/",
    "https://[::ffff:127.0.0.1]/", "https://[fd00:ec2::254]/", "http://93.184.216.34/", "https://u:p@93.184.216.34/",
    "https://93.184.216.34:99999/", "file:///etc/passwd", "https://no-such-host.invalid/",
    "https://[8g&M/", "https://[::1/hook",
])
def test_the_guard_refuses_what_is_not_a_public_https_address(url: str) -> None:
    with pytest.raises(RefusedAddress):
        resolve(url, allow_loopback=False)


def test_the_local_allowance_lets_loopback_through_and_nothing_else() -> None:
    target = resolve("http://127.0.0.1:8080/hook", allow_loopback=True)
    assert (str(target.address), target.port, target.path) == ("127.0.0.1", 8080, "/hook")
    for url in ("http://10.0.0.1/", "https://169.254.169.254/", "http://93.184.216.34/"):
        with pytest.raises(RefusedAddress):
            resolve(url, allow_loopback=True)
    public = resolve("https://93.184.216.34/x?y=1", allow_loopback=False)
    assert (str(public.address), public.port, public.path) == ("93.184.216.34", 443, "/x?y=1")


def test_the_retry_schedule_spans_a_day_and_ends() -> None:
    delays = DeliverySettings(mongo_uri="mongodb://unused").retry_delays()
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    assert sum(delays) * (1 - JITTER) >= timedelta(hours=24).total_seconds()
    assert next_attempt_time(len(delays), delays, moment) is not None
    assert next_attempt_time(len(delays) + 1, delays, moment) is None
