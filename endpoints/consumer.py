"""How every CloudEvent consumer answers the broker's dispatcher.

- A payload that breaks its schema, or names a job that does not fit: logged and acknowledged (2xx), since
  sending it again cannot help and the dispatcher would only dead-letter it.
- A transient fault (a database or the broker away, another attempt still running): 503, so the dispatcher
  retries per the Trigger's delivery spec and dead-letters after the last try.
- Done, or a permanent failure recorded on the job: 2xx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import pymongo.errors
import pymysql
import werkzeug.exceptions
from cloudevents.http import CloudEvent

from events import EmitError, EventPayload, InvalidEvent, RetryLater, parse_event
from runtime import telemetry

log = logging.getLogger(__name__)
Payload = TypeVar("Payload", bound=EventPayload)


TRANSIENT_ERRORS = (RetryLater, EmitError, pymongo.errors.PyMongoError, pymysql.err.OperationalError,
                    pymysql.err.InterfaceError)


def consume(event: CloudEvent, model: type[Payload], handle: Callable[[Payload], None]) -> None:
    with telemetry.handling(event) as delivery:
        try:
            payload = parse_event(event, model)
        except InvalidEvent as error:
            delivery.ended("dropped")
            log.warning("dropping event id=%s source=%s: %s", event["id"], event["source"], error)
            return
        delivery.job(payload.job_id)
        try:
            handle(payload)
        except TRANSIENT_ERRORS as error:
            delivery.ended("retry")
            log.warning("event id=%s for job %s will be retried: %s: %s", event["id"], payload.job_id,
                        type(error).__name__, error)
            raise werkzeug.exceptions.ServiceUnavailable(f"{type(error).__name__}: retry later") from None
        delivery.ended("done")
