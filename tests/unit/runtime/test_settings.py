"""Start-up settings from the environment: every missing or invalid variable named at once, defaults and limits as
declared, lists read from their text, secrets kept out of reprs, and telemetry started under the function's name."""

from __future__ import annotations

import os

import pytest

from runtime import telemetry
from runtime.settings import (
    SETTINGS_BY_FUNCTION,
    ConvertSettings,
    CorsSettings,
    DeliverySettings,
    MissingSettings,
    MongoSettings,
    UploadSettings,
    load_settings,
    required_variables,
)


class Environment:
    """The process environment, emptied for the test (and restored after it), and telemetry's start-ups, recorded
    instead of run (it would configure the process's logging)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.started_telemetry: list[tuple[str, str]] = []
        for name in list(os.environ):
            monkeypatch.delenv(name)
        monkeypatch.setattr(telemetry, "start",
                            lambda function, endpoint: self.started_telemetry.append((function, endpoint)))

    def set(self, **variables: str) -> None:
        for name, value in variables.items():
            self._monkeypatch.setenv(name, value)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Environment:
    return Environment(monkeypatch)


def problems(settings_class: type, environment: Environment, **variables: str) -> str:
    environment.set(**variables)
    with pytest.raises(MissingSettings) as missing:
        load_settings(settings_class)
    return str(missing.value)


def test_every_missing_variable_is_named_at_once(environment: Environment) -> None:
    message = problems(UploadSettings, environment)
    assert message.startswith("UploadSettings: fix these environment variables: ")
    for name in ("MONGO_URI", "K_SINK", "JWKS_URL", "PUBLIC_STATUS_URL"):
        assert f"{name}: Field required" in message
    assert "MAX_UPLOAD_BYTES" not in message  # it has a default
    assert environment.started_telemetry == []


def test_missing_settings_stop_the_process() -> None:
    assert issubclass(MissingSettings, SystemExit)


@pytest.mark.parametrize(("variables", "named"), [
    ({"K_SINK": "not a url"}, "K_SINK"),
    ({"QUOTA_JOBS_IN_FLIGHT": "0"}, "QUOTA_JOBS_IN_FLIGHT"),
    ({"MAX_UPLOAD_BYTES": "lots"}, "MAX_UPLOAD_BYTES"),
    ({"RESUMABLE_UPLOAD_LIFETIME_SECONDS": "60"}, "RESUMABLE_UPLOAD_LIFETIME_SECONDS"),  # under the hour
    ({"URL_IMPORT_ALLOW_NETWORKS": "10.0.5.0/24, the office"}, "URL_IMPORT_ALLOW_NETWORKS"),
])
def test_an_invalid_value_is_named(environment: Environment, variables: dict[str, str], named: str) -> None:
    required = {"MONGO_URI": "mongodb://db/", "K_SINK": "http://broker/", "JWKS_URL": "http://auth/jwks",
                "PUBLIC_STATUS_URL": "http://status/"}
    message = problems(UploadSettings, environment, **{**required, **variables})
    assert f"{named}: " in message and "MONGO_URI" not in message


@pytest.mark.parametrize("delays", ["5,0", "5,,6", "", "5,-1", "soon"])
def test_a_retry_schedule_of_anything_but_positive_seconds_is_refused(environment: Environment,
                                                                      delays: str) -> None:
    message = problems(DeliverySettings, environment, MONGO_URI="mongodb://db/", WEBHOOK_RETRY_DELAYS_SECONDS=delays)
    assert "WEBHOOK_RETRY_DELAYS_SECONDS" in message


def test_settings_are_read_with_their_defaults_and_telemetry_starts_under_the_functions_name(
        environment: Environment) -> None:
    environment.set(mongo_uri="mongodb://user:hunter2@db/",  # names are not case-sensitive
                    WEBHOOK_RETRY_DELAYS_SECONDS="5, 60,3600", OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318")
    settings = load_settings(DeliverySettings)
    assert settings.retry_delays() == (5.0, 60.0, 3600.0)
    assert (settings.mongo_database, settings.webhook_timeout_seconds, settings.webhook_allow_loopback) == \
        ("vid2mp3", 15, False)
    assert settings.mongo_uri.get_secret_value() == "mongodb://user:hunter2@db/"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert environment.started_telemetry == [("delivery", "http://collector:4318")]


def test_a_settings_class_of_no_function_starts_telemetry_under_its_own_name(environment: Environment) -> None:
    environment.set(MONGO_URI="mongodb://db/")
    load_settings(MongoSettings)
    assert environment.started_telemetry == [("MongoSettings", "")]


def test_the_default_retry_schedule_spans_a_day() -> None:
    delays = DeliverySettings(mongo_uri="mongodb://db/").retry_delays()  # type: ignore[arg-type]
    assert len(delays) == 7 and sum(delays) * 0.9 >= 24 * 3600


@pytest.mark.parametrize(("text", "origins"), [
    ("", frozenset()),
    ("https://web.example.test", {"https://web.example.test"}),
    (" https://a.test/ , ,https://b.test:8443,", {"https://a.test", "https://b.test:8443"}),
])
def test_cors_origins_are_read_from_a_comma_separated_list(text: str, origins: set[str]) -> None:
    assert CorsSettings(cors_allowed_origins=text).allowed_origins() == origins


def test_the_required_variables_are_those_without_a_default() -> None:
    assert required_variables(ConvertSettings) == {"MONGO_URI", "K_SINK"}
    assert required_variables(DeliverySettings) == {"MONGO_URI"}
    assert {"MYSQL_URL", "JWT_PRIVATE_KEY", "JWKS_URL", "MONGO_URI", "K_SINK"} <= \
        required_variables(SETTINGS_BY_FUNCTION["auth"])
