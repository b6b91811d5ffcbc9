"""notify (CloudEvent, triggered by io.vid2mp3.audio.converted.v1): emails the owner the download link through
SendGrid, once per MP3, then emits io.vid2mp3.notification.sent.v1."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from accounts.credentials import CredentialGenerations
from endpoints.consumer import consume
from events import AudioConverted, EventEmitter
from functions.notify.notifier import Mailer, Notifier
from jobs.links import DownloadLinks
from jobs.records import Jobs
from runtime.settings import NotifySettings, load_settings
from storage import mongo

settings = load_settings(NotifySettings)
database = mongo.database(settings)
notifier = Notifier(
    jobs=Jobs(database),
    mailer=Mailer(
        api_key=settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else None,
        api_host=str(settings.sendgrid_api_host), sender=settings.mail_from,
    ),
    emitter=EventEmitter(str(settings.k_sink), "notify"),
    mysql_url=settings.mysql_url.get_secret_value(),
    links=DownloadLinks(settings.download_link_keys.get_secret_value(), str(settings.public_download_url),
                        generation_of=CredentialGenerations(database).current),
    public_web_url=str(settings.public_web_url),
)


@functions_framework.cloud_event
def notify(event: CloudEvent) -> None:
    consume(event, AudioConverted, notifier.handle)
