"""Starts, finds and stops the local stack's background processes: one pid file and one log file per process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stack.config import LOGS, RUN


class StackError(RuntimeError):
    """Something the operator must fix; the message says what and how."""


def pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def log_file(name: str) -> Path:
    return LOGS / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not collected it yet
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def running_pid(name: str) -> int | None:
    """The pid of our process `name` if it still runs (and is still the program we started), else None."""
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid_text, _, program = path.read_text().partition("\n")
        pid = int(pid_text)
    except ValueError:
        return None
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not any(cmdline):
        # Read mid-exec (just after `start`), /proc shows an empty command line: alive, not yet identifiable.
        return pid
    # Guard against a recycled pid: the process must still be the program we recorded.
    return pid if any(program.strip().encode() in part for part in cmdline[:3]) else None


def start(name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Starts `argv` in a session of its own (so stopping it stops its children), logging to logs/<name>.log."""
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(log_file(name), "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    pid_file(name).write_text(f"{process.pid}\n{Path(argv[0]).name}\n")
    return process.pid


def stop(name: str, timeout: float = 15.0) -> bool:
    """Stops our process `name` and its session: SIGTERM, then SIGKILL after `timeout`. True if it was running."""
    pid = running_pid(name)
    pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    try:  # whatever is left of the session, including children that ignored SIGTERM
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # A supervisor removes its child's pid file as it exits, but not when it is killed after the timeout.
    pid_file(f"{name}.child").unlink(missing_ok=True)
    return True


def managed_names() -> list[str]:
    """Names of the processes `start` recorded (a supervisor's child pid files are its own business)."""
    names = (path.stem for path in RUN.glob("*.pid")) if RUN.exists() else iter(())
    return sorted(name for name in names if not name.endswith(".child"))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], what: str, timeout: float, name: str | None = None) -> None:
    """Polls `check` until it holds; on timeout, or if process `name` died, raises naming the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not ready yet is the common case; the timeout reports it
            pass
        if name is not None and running_pid(name) is None:
            raise StackError(f"{what}: the process exited; see {log_file(name)}:\n{tail(log_file(name))}")
        time.sleep(0.2)
    hint = f"; see {log_file(name)}:\n{tail(log_file(name))}" if name else ""
    raise StackError(f"{what}: not ready after {timeout:.0f} s{hint}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def python() -> str:
    return sys.executable
