"""The shutdown watchdog ends a worker that does not stop in time, even when the thread that
hangs holds the interpreter lock (a C call that never returns), where no Python timer can run.

Each case runs in a process of its own: the watchdog ends the process it is armed in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

ARM = """
import ctypes, time
from uee.streams.run import _Watchdog
watchdog = _Watchdog(0.3)
watchdog.LAST_RESORT_S = 0.5
watchdog.arm()
"""


def run(body: str) -> tuple[int, str, float]:
    """Exit code, stderr and seconds taken of a Python process running ARM, then `body`."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", ARM + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr, time.monotonic() - started


def test_a_worker_that_does_not_stop_is_ended_with_the_watchdogs_error() -> None:
    code, stderr, _ = run("time.sleep(30)")
    assert code == 1
    assert "error[SHUTDOWN_TIMEOUT]" in stderr
    assert "Timeout" not in stderr  # ended by the first watchdog, not the last resort


def test_a_hang_that_holds_the_interpreter_lock_is_ended_too_with_every_threads_stack() -> None:
    # A PyDLL call keeps the interpreter lock for its whole length: the Python timer cannot
    # run until it returns, 30 s later.
    code, stderr, took = run("ctypes.PyDLL(None).sleep(30)")
    assert code == 1
    assert took < 20, f"ended only after {took:.1f}s: the sleep returned first"
    assert "Timeout (" in stderr and "(most recent call first)" in stderr, stderr


def test_a_cancelled_watchdog_lets_the_worker_exit_on_its_own() -> None:
    code, stderr, _ = run("""
        watchdog.cancel()
        time.sleep(1.5)  # past the bound and the last resort
    """)
    assert (code, stderr) == (0, "")
