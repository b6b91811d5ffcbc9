"""Keeps one function process running, as Kubernetes keeps a pod's container: restarts it when it dies.

Usage: python -m stack.supervise NAME -- COMMAND...   (the child's pid is written to run/NAME.child.pid)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

from stack.config import RUN

RESTART_DELAY_SECONDS = 0.5


def main() -> None:
    name, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit("usage: python -m stack.supervise NAME -- COMMAND...")
    child_pid_file = RUN / f"{name}.child.pid"
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGINT, on_terminate)
    while not stopping:
        child = subprocess.Popen(command)
        child_pid_file.write_text(str(child.pid))
        code = child.wait()
        if not stopping:
            print(f"supervise: {name} exited with {code}; restarting", file=sys.stderr, flush=True)
            time.sleep(RESTART_DELAY_SECONDS)
    child_pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
