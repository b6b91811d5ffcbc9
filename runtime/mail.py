"""Email through SendGrid's v3 API (`Mailer`), for the functions that write to account owners: notify (an MP3 is
ready) and auth (someone tried to sign up with your address). Without an API key the message is logged instead."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from runtime import telemetry
from runtime.settings import MailSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mailer:
    """SendGrid's v3 API when a key is configured; otherwise the message is logged, for development."""

    api_key: str | None
    api_host: str
    sender: str

    @telemetry.traced("email send")
    def send(self, recipient: str, subject: str, text: str) -> str:
        if not self.api_key:
            log.info("no SENDGRID_API_KEY: would send to %s: %s\n%s", recipient, subject, text)
            return "log"
        client = SendGridAPIClient(api_key=self.api_key, host=self.api_host.rstrip("/"))
        response = client.send(Mail(from_email=self.sender, to_emails=recipient, subject=subject,
                                    plain_text_content=text))
        return "email" if 200 <= response.status_code < 300 else "failed"

    @classmethod
    def from_settings(cls, settings: MailSettings) -> Mailer:
        return cls(api_key=settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else None,
                   api_host=str(settings.sendgrid_api_host), sender=settings.mail_from)
