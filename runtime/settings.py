"""Reads each function's environment once, at start-up, into a typed settings object, failing fast on what is missing.

A field's environment variable is its name in upper case; a field without a default is required.
`SETTINGS_BY_FUNCTION` is the one list of what every function needs: the Knative manifests are checked against it.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime import addresses, telemetry


class FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)
    # Where traces and metrics go over OTLP/HTTP (the SDKs' standard variable; /v1/traces and /v1/metrics are
    # appended). Unset: the function makes none (runtime/telemetry.py).
    otel_exporter_otlp_endpoint: str = ""
    # The HTTP server every function runs in (runtime/server.py), the same in the image and in the local stack.
    # The request line and every header must arrive within this long of the server taking the connection up
    # (else 408, and the connection is closed): a client trickling its headers cannot hold one of the threads.
    request_headers_timeout_seconds: float = Field(default=10, gt=0, le=300)
    # The longest pause allowed between two reads of a request's body, and between two writes of its answer (a
    # client that stops sending answers 408; one that stops reading is cut off).
    request_body_idle_timeout_seconds: float = Field(default=20, gt=0, le=600)


class ServerSettings(FunctionSettings):
    """What runtime/server.py reads: the settings every function has."""


class MongoSettings(FunctionSettings):
    # Secret in a cluster: a MongoDB URI may carry credentials.
    mongo_uri: SecretStr
    mongo_database: str = "vid2mp3"


class EmitterSettings(FunctionSettings):
    # Injected by a SinkBinding on Knative; the broker ingress URL in the local stack.
    k_sink: AnyHttpUrl


class TokenSettings(FunctionSettings):
    jwt_issuer: str = "vid2mp3-auth"
    jwt_audience: str = "vid2mp3"


class TokenVerifierSettings(TokenSettings):
    # The auth function's JWKS: tokens are verified locally against these public keys (cached).
    jwks_url: AnyHttpUrl
    # How long a function keeps an account's credential generation (accounts/credentials.py) before reading it
    # again: a deleted account's or changed password's tokens stop within this (at most 30 s).
    credentials_cache_seconds: float = Field(default=15, gt=0, le=30)


class CorsSettings(FunctionSettings):
    # Origins (comma-separated, e.g. the web page's `https://web.example.com`) allowed to call a public function
    # from a browser; empty allows none.
    cors_allowed_origins: str = ""

    def allowed_origins(self) -> frozenset[str]:
        return frozenset(origin.strip().rstrip("/") for origin in self.cors_allowed_origins.split(",")
                         if origin.strip())


class DownloadLinkSettings(FunctionSettings):
    # Secret: the keys that sign download links (jobs/links.py): `<id>:<base64url key>[,...]`, the
    # first signs, all verify.
    download_link_keys: SecretStr
    public_download_url: AnyHttpUrl


class QuotaSettings(FunctionSettings):
    # Per user (jobs/quotas.py); over one, a request is refused with 429 and Retry-After.
    quota_jobs_in_flight: int = Field(default=3, ge=1)
    quota_uploads_per_hour: int = Field(default=30, ge=1)
    # Videos waiting for conversion and MP3s not yet expired, together.
    quota_media_bytes: int = Field(default=8 * 1024**3, ge=1)
    quota_live_streams: int = Field(default=3, ge=1)


class MediaLimitSettings(FunctionSettings):
    # What an input may be: its length and its number of streams (the upload's extraction and the conversion apply
    # the same limits: transcoding/ffmpeg_tools.py).
    max_duration_seconds: float = Field(default=3 * 3600, gt=0)
    max_streams: int = Field(default=32, ge=1)


class DeletionPacingSettings(FunctionSettings):
    # The pace of large deletions (storage/pacing.py): bursts of about this long, each followed by a rest so that
    # they take this share of the time, so that the uploads' writes are not held behind them on a database with one
    # write lock (the local FerretDB). The reconcile sweep's, and the upload's removal of a finished tus upload's
    # video.
    deletion_burst_seconds: float = Field(default=0.05, ge=0)
    deletion_duty_cycle: float = Field(default=0.2, gt=0, le=1)


class MailSettings(FunctionSettings):
    # SendGrid's v3 API (runtime/mail.py); without a key, messages are logged instead of sent.
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_host: AnyHttpUrl = AnyHttpUrl("https://api.sendgrid.com")
    mail_from: str = "vid2mp3@example.com"


class AuthSettings(TokenVerifierSettings, CorsSettings, MongoSettings, EmitterSettings, MailSettings):
    # MongoDB and the broker: deleting an account (`DELETE /account`, with a token of its own) deletes its jobs
    # and their media, cancelling those still running.
    mysql_url: SecretStr
    # PEM of an Ed25519 private key; its public half is published as the JWKS.
    jwt_private_key: SecretStr
    jwt_key_id: str = ""
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    # Failed logins within the window before further attempts are refused (429), counted per account from one client
    # address; per client address over every account (spraying); per account from every address, which does not
    # refuse the addresses the account logged in from before (accounts/login_throttle.py): no one can lock the owner
    # out.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=50, ge=1)
    login_max_failures_per_account: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # The web page, which the email to an address's owner after a sign-up attempt names.
    public_web_url: AnyHttpUrl | None = None
    # Sign-ups per client address within an hour before further ones are refused (429).
    signups_per_address_per_hour: int = Field(default=10, ge=1)
    # How many proxies of our own (ingress gateway, activator, queue-proxy) stand between the client and auth, each
    # appending its caller's address to X-Forwarded-For: the client's address is read that far from the right.
    # 0 takes the connection's address (the local stack).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)


class UploadSettings(MongoSettings, EmitterSettings, TokenVerifierSettings, CorsSettings, QuotaSettings,
                     MediaLimitSettings, DeletionPacingSettings):
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Imports by URL (functions/upload/url_import.py): the whole fetch's time limit; and, for the local stack's
    # test servers only, loopback addresses allowed (runtime/addresses.py).
    url_import_timeout_seconds: float = Field(default=600, gt=0)
    url_import_allow_loopback: bool = False
    # Internal networks imports may reach besides the internet (comma-separated, e.g. an object store's
    # `10.0.5.0/24`); none by default.
    url_import_allow_networks: str = ""
    # The scratch disk: each upload is spooled here, and its audio and covers extracted, in a private folder
    # removed afterwards (and all of them when the function starts: no other process uses them).
    work_dir: str = "/tmp"  # noqa: S108 - a per-upload private directory is made inside it
    # The most the uploads of one process hold there at once (each takes twice its size: the spool, and a source
    # that may be as large, for audio-only uploads); one past it is answered 503. Keep it under the scratch
    # volume's sizeLimit (knative/200-services.yaml), which evicts the pod when passed.
    scratch_limit_bytes: int = Field(default=4 * 1024**3 + 512 * 1024**2, ge=1)
    public_status_url: AnyHttpUrl
    # Where clients reach this function: a resumable upload's URL (tus `Location`) is `<it>/files/<id>`. Unset: the
    # URL the creating request came to.
    public_upload_url: AnyHttpUrl | None = None
    # An unfinished resumable upload expires this long after its last bytes arrived (tus `Upload-Expires`); the
    # reconcile sweep then removes it. At least the quota reservation's hour (storage/unfinished_uploads.py).
    resumable_upload_lifetime_seconds: int = Field(default=24 * 3600, ge=3600)
    # The least a resumable upload's PATCH (or creation body) may bring, but for the one that ends the upload: a
    # smaller one is refused (functions/upload/resumable.py). The web page and the command send 8 MiB.
    resumable_min_patch_bytes: int = Field(default=256 * 1024, ge=1)

    @field_validator("url_import_allow_networks")
    @classmethod
    def comma_separated_networks(cls, value: str) -> str:
        addresses.networks(value)  # its ValueError names the part that is not a network
        return value


class StatusSettings(MongoSettings, EmitterSettings, TokenVerifierSettings, CorsSettings, DownloadLinkSettings,
                     QuotaSettings):
    # A job's live event stream ends after this long (the client reconnects): each open stream holds one of the
    # server's threads, and Knative ends a request at the Service's timeoutSeconds.
    events_stream_max_seconds: float = Field(default=900, gt=0)
    # Open streams allowed at once; the rest are answered 503 (clients poll instead), so plain requests always
    # find a free thread (functions-framework runs THREADS of them, 8 in the local stack).
    events_max_streams: int = Field(default=6, ge=1)


class DownloadSettings(MongoSettings, TokenVerifierSettings, CorsSettings, DownloadLinkSettings):
    # The web page, where a browser opening an emailed link that no longer works is sent to read why (not JSON).
    public_web_url: AnyHttpUrl | None = None


class ConvertSettings(MongoSettings, EmitterSettings, MediaLimitSettings):
    work_dir: str = "/tmp"  # noqa: S108 - a per-job private directory is made inside it
    # Wall-clock budget of one ffmpeg run; the Trigger timeout (PT3M) must stay above it.
    ffmpeg_timeout_seconds: float = Field(default=150, gt=0)
    # How long an MP3 stays downloadable; the reconcile step deletes it afterwards.
    audio_retention_seconds: int = Field(default=24 * 3600, ge=60)
    # How long the job's source (the audio tracks kept of its upload) and covers are kept once its MP3 is stored:
    # 0 deletes them at once; otherwise the reconcile step deletes them when the time is up. (The name is older than
    # sources: an upload's whole video is no longer kept.)
    source_video_retention_seconds: int = Field(default=0, ge=0)
    # Audio at least this long is encoded as segments at once on this instance's CPUs (when it may use two or
    # more): a split costs ~0.3 s and pays from 2-3 minutes of audio (docs/PERFORMANCE.md).
    segment_min_seconds: float = Field(default=150, gt=0)
    # Audio at least this long is fanned out to the segment-encoding function, in segments of about
    # FAN_OUT_SEGMENT_SECONDS (at most FAN_OUT_MAX_SEGMENTS): many pods encode one job (docs/PERFORMANCE.md has the
    # model this default comes from). 0 turns the fan-out off (a deployment without the segment function).
    fan_out_min_seconds: float = Field(default=1800, ge=0)
    fan_out_segment_seconds: float = Field(default=300, gt=0)
    fan_out_max_segments: int = Field(default=64, ge=2)


class SegmentSettings(MongoSettings, EmitterSettings):
    max_duration_seconds: float = Field(default=3 * 3600, gt=0)
    work_dir: str = "/tmp"  # noqa: S108 - a per-segment private directory is made inside it
    # Wall-clock budget of one segment's ffmpeg; the segment Trigger's timeout must stay above it.
    ffmpeg_timeout_seconds: float = Field(default=150, gt=0)
    audio_retention_seconds: int = Field(default=24 * 3600, ge=60)
    source_video_retention_seconds: int = Field(default=0, ge=0)


class NotifySettings(MongoSettings, EmitterSettings, DownloadLinkSettings, MailSettings):
    mysql_url: SecretStr
    # The web page, whose view of the job the email links to.
    public_web_url: AnyHttpUrl


class DeadLetterSettings(MongoSettings, EmitterSettings):
    pass


class ReconcileSettings(MongoSettings, EmitterSettings, DeletionPacingSettings):
    # A job that has not moved for this long is re-driven (or failed once it ran out of attempts): longer than
    # the convert Trigger's whole retry budget (about 22 min), so the broker's own retries come first.
    stuck_after_seconds: float = Field(default=1800, gt=0)
    max_redrives: int = Field(default=3, ge=0)
    # Lifetimes (README, "What is stored, for how long"): a job's record is purged this long after the minute the job
    # ended (its status then answers 404); 0 purges each job as soon as it has settled (an hour after it ended).
    job_record_retention_seconds: int = Field(default=30 * 24 * 3600, ge=0)
    # Login-throttle rows (MySQL) are deleted this long after their window started; longer than the auth
    # function's LOGIN_FAILURE_WINDOW_SECONDS, or throttling would forget failures early.
    login_failure_retention_seconds: int = Field(default=24 * 3600, ge=900)
    # Records deleted per purge step of a sweep: a sweep's work, and its time, stay bounded however much is due.
    purge_batch_size: int = Field(default=500, ge=1)
    # The most the sweep's deletions (paced: DeletionPacingSettings) take per sweep, rests included (the sweep
    # must end before the next tick: reconcile's timeoutSeconds is 55, the other steps take a few seconds).
    deletion_seconds_per_sweep: float = Field(default=30, gt=0, le=45)
    mysql_url: SecretStr


class WebhookSettings(MongoSettings):
    # Lets webhooks reach receivers on 127.0.0.1 over plain http: the local stack's, never a cluster's
    # (runtime/addresses.py).
    webhook_allow_loopback: bool = False


class WebhooksSettings(WebhookSettings, TokenVerifierSettings, CorsSettings):
    webhook_max_endpoints: int = Field(default=10, ge=1)


class DeliverySettings(WebhookSettings):
    webhook_timeout_seconds: float = Field(default=15, gt=0, le=60)
    # Seconds to wait before each retry of a failed delivery, with ±10 % jitter: 8 attempts over about 27.5 hours
    # (the schedule Standard Webhooks' reference service uses). The PingSource ticks every minute, so the short
    # first delay means "at the next tick".
    webhook_retry_delays_seconds: str = "5,300,1800,7200,18000,36000,36000"
    # How long an ended delivery (delivered, failed, abandoned) stays in the endpoint's log.
    webhook_delivery_log_seconds: int = Field(default=7 * 86400, ge=60)

    @field_validator("webhook_retry_delays_seconds")
    @classmethod
    def positive_delays(cls, value: str) -> str:
        if not all(part.strip() and float(part) > 0 for part in value.split(",")):
            raise ValueError("a comma-separated list of positive seconds")
        return value

    def retry_delays(self) -> tuple[float, ...]:
        return tuple(float(delay) for delay in self.webhook_retry_delays_seconds.split(","))


class WebSettings(FunctionSettings):
    public_auth_url: AnyHttpUrl
    public_upload_url: AnyHttpUrl
    public_status_url: AnyHttpUrl
    public_download_url: AnyHttpUrl
    # Named in the OpenAPI document it serves (api/openapi.py); the page itself does not call it.
    public_webhooks_url: AnyHttpUrl


SETTINGS_BY_FUNCTION: dict[str, type[FunctionSettings]] = {
    "auth": AuthSettings,
    "upload": UploadSettings,
    "status": StatusSettings,
    "download": DownloadSettings,
    "convert": ConvertSettings,
    "segment": SegmentSettings,
    "notify": NotifySettings,
    "deadletter": DeadLetterSettings,
    "reconcile": ReconcileSettings,
    "web": WebSettings,
    "webhooks": WebhooksSettings,
    "delivery": DeliverySettings,
}

S = TypeVar("S", bound=FunctionSettings)


class MissingSettings(SystemExit):
    """Raised at start-up; names every missing or invalid variable so the operator can fix them at once."""


def load_settings(settings_class: type[S]) -> S:
    """The function's settings; and, as every function's start-up comes through here, its logs and telemetry."""
    try:
        settings = settings_class()
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']).upper()}: {item['msg']}" for item in error.errors()
        ]
        raise MissingSettings(
            f"{settings_class.__name__}: fix these environment variables: " + "; ".join(problems)
        ) from None
    function = next((name for name, known in SETTINGS_BY_FUNCTION.items() if known is settings_class),
                    settings_class.__name__)
    telemetry.start(function, settings.otel_exporter_otlp_endpoint)
    return settings


def required_variables(settings_class: type[FunctionSettings]) -> set[str]:
    return {name.upper() for name, field in settings_class.model_fields.items() if field.is_required()}
