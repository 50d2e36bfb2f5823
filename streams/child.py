"""A helper process uee starts and owns (the embedded broker, its storage): output to a
temporary log file, the end of which goes into errors; killed with uee, even by kill -9;
stopped with SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

PR_SET_PDEATHSIG = 1
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def die_with_parent() -> None:
    """Runs in the child: Linux kills it if uee dies, even by kill -9."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    def __init__(self, log_prefix: str) -> None:
        self._log_prefix = log_prefix
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def start(self, args: list[str], env: dict[str, str]) -> None:
        if self._log_path is not None:  # started again after it died: a fresh log
            with contextlib.suppress(OSError):
                self._log_path.unlink()
        fd, log_name = tempfile.mkstemp(prefix=self._log_prefix, suffix=".log")
        self._log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=die_with_parent, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self.process.poll() if self.process is not None else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_tail(self, lines: int = 8) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = ANSI_ESCAPE.sub("", self._log_path.read_text(errors="replace"))
        return "\n".join("  " + line for line in text.splitlines()[-lines:])

    def stop(self, grace: float) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
