"""One worker of a deployment: who it is, where it keeps its tables, and its app state.

Workers of one app (`uee run --app NAME`) share the state tables; each keeps its RocksDB
copy in a slot of the state folder (`<state dir>/<app>/w<N>`) that it locks for its
lifetime, so two workers on one host never open the same RocksDB, and a worker restarted
after a crash takes the slot back and only reads the changelog past what it had.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from uee.errors import UeeError
from uee.streams.provider import A, AppMachine, Provider, now_iso
from uee.streams.state import DEPLOYMENT
from uee.streams.statelog import StateWriter

log = logging.getLogger("uee.state")
SLOTS = 64
ORIGIN = ".origin"  # in a slot: where its tables came from (StateSlot.bind)


class StateDirError(UeeError):
    code = "STATE_DIR"


class StateSlot:
    """A locked folder for one worker's RocksDB tables."""

    def __init__(self, base: str | None, app: str) -> None:
        root = Path(base) if base else Path(tempfile.gettempdir()) / "uee"
        folder = root / app
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"cannot create the state folder {folder}: {exc.strerror}; "
                                "set UEE_STATE_DIR to a writable folder") from exc
        self._lock: IO[str] | None = None
        for slot in range(SLOTS):
            path = folder / f"w{slot}"
            path.mkdir(exist_ok=True)
            handle = open(path / ".lock", "w")  # noqa: SIM115 (held for the process' life)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._lock, self.path, self.slot = handle, path, slot
            self.origin = ""  # set by bind
            return
        raise StateDirError(f"all {SLOTS} state slots in {folder} are in use by running "
                            "workers; stop some, or give this one UEE_STATE_DIR")

    def bind(self, origin: str) -> bool:
        """The slot caches the tables of one deployment on one cluster (`origin`: the
        cluster's and the state topic's ids). Tables kept from another origin (a new
        embedded broker, the topics made anew) are thrown away before Faust opens them:
        their offsets point past the new changelogs' ends, and Faust refuses to recover
        them. True if the slot was emptied."""
        self.origin = origin
        marker = self.path / ORIGIN
        known = marker.read_text() if marker.exists() else None
        if known == origin:
            return False
        stale = [entry for entry in self.path.iterdir() if entry.name not in (".lock", ORIGIN)]
        for entry in stale:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        marker.write_text(origin)
        return bool(stale)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def worker_id(slot: int) -> str:
    return f"{socket.gethostname()}/w{slot}"


class WorkerState:
    """The app state machine of this worker, fed by its providers, persisted as its row."""

    def __init__(self, app: str, worker: str, writer: StateWriter,
                 providers: Callable[[], list[Provider]]) -> None:
        self.app = app
        self.worker = worker
        self._writer = writer
        self._providers = providers
        self._lock = threading.Lock()
        self._started = now_iso()
        self.machine = AppMachine(self._changed)

    def _changed(self, before: A, after: A, reason: str) -> None:
        log.info("%s", json.dumps({"app": self.app, "worker": self.worker, "from": before,
                                   "to": after, "trigger": reason, "at": self.machine.since}))
        self._writer.put(DEPLOYMENT, f"worker:{self.worker}", self.row())
        self._writer.send()

    def row(self, stopped: bool = False) -> dict[str, Any]:
        return {"app": self.app, "worker": self.worker, "state": str(self.machine.state),
                "since": self.machine.since, "started": self._started, "pid": os.getpid(),
                "pipelines": sorted(p.pipeline for p in self._providers()),
                "stopped": now_iso() if stopped else None}

    def bootstrapped(self) -> None:
        with self._lock:
            self.machine.to(A.ORCHESTRATING, "tables and agents started")
            self.machine.settle(self._providers())

    def settle(self) -> None:
        """A provider changed (called from agent threads)."""
        with self._lock:
            self.machine.settle(self._providers())

    def drain(self, reason: str) -> None:
        with self._lock:
            self.machine.to(A.DRAINING, reason)

    def stopped(self) -> None:
        self._writer.put(DEPLOYMENT, f"worker:{self.worker}", self.row(stopped=True))
