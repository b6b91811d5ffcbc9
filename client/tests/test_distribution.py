"""The command installs on its own: the distribution's requirements, followed through every package they require,
hold none of the server's libraries."""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

SERVER_LIBRARIES = {"pymongo", "pika", "pymysql", "sendgrid", "argon2-cffi", "functions-framework", "cloudevents",
                    "ffmpeg-python", "opentelemetry-sdk", "opentelemetry-api", "vid2mp3"}


def requirement_name(text: str) -> str | None:
    """The distribution a requirement names, unless its marker leaves it out here (an extra, another platform)."""
    requirement = Requirement(text)
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        return None
    return requirement.name.lower().replace("_", "-")


def installed_closure(name: str) -> set[str]:
    found, waiting = set(), [name]
    while waiting:
        current = waiting.pop()
        if current in found:
            continue
        found.add(current)
        waiting += [required for requirement in metadata.requires(current) or []
                    if (required := requirement_name(requirement)) is not None]
    return found


def test_the_command_requires_none_of_the_server() -> None:
    closure = installed_closure("vid2mp3-client")
    assert {"requests", "tuspy"} <= closure
    assert not closure & SERVER_LIBRARIES, closure & SERVER_LIBRARIES
    assert not any(name.startswith("opentelemetry") for name in closure)


def test_the_command_is_the_clients_entry_point() -> None:
    scripts = {entry.name: entry.value for entry in metadata.entry_points(group="console_scripts")
               if entry.dist is not None and entry.dist.name == "vid2mp3-client"}
    assert scripts == {"vid2mp3": "vid2mp3_client.cli:main"}
