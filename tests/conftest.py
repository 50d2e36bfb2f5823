"""Shared fixtures: one real broker per session, the `uee` command, leak checks.

The broker is the embedded Tansu by default (UEE_TEST_KAFKA=durable: durable, on SeaweedFS in a
temporary folder); UEE_TEST_KAFKA=apache starts Apache Kafka 3.9
from Maven Central (tests/apache_kafka.py: needs Java and Maven); UEE_TEST_BOOTSTRAP=host:port
uses an existing cluster; UEE_TEST_KAFKA=container starts Apache Kafka with testcontainers
(needs a Docker engine). Integration tests never mock Kafka.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.apache_kafka import Listeners

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap address of a real Kafka-compatible broker, for the whole session."""
    existing = os.environ.get("UEE_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    if os.environ.get("UEE_TEST_KAFKA") == "apache":
        from tests.apache_kafka import ApacheKafka, ApacheKafkaUnavailableError

        try:
            broker = ApacheKafka().__enter__()
        except ApacheKafkaUnavailableError as exc:
            pytest.fail(f"UEE_TEST_KAFKA=apache: {exc}")
        _SECURE.append(broker.listeners)
        try:
            yield broker.bootstrap
        finally:
            _SECURE.clear()
            broker.__exit__(None, None, None)
        return
    if os.environ.get("UEE_TEST_KAFKA") == "container":
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.10 kept it here
            from testcontainers.kafka import KafkaContainer

        # testcontainers drives Confluent's packaging of Apache Kafka; KRaft, one node.
        container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
        try:
            container.start()
        except Exception as exc:  # docker.errors.DockerException and friends
            pytest.fail(f"UEE_TEST_KAFKA=container needs a running Docker engine: {exc}")
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
        return
    from uee.streams.broker import EmbeddedBroker

    if os.environ.get("UEE_TEST_KAFKA") == "durable":
        with tempfile.TemporaryDirectory(prefix="uee-durable-") as folder, \
                EmbeddedBroker(durable=folder) as broker:
            yield broker.bootstrap
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


_SECURE: list[Listeners] = []  # the session broker's TLS and SASL listeners, when it has them


@pytest.fixture(scope="session")
def secure_listeners(kafka: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Listeners]:
    """SSL and SASL_SSL (SCRAM-SHA-512) listeners: Apache Kafka's own on its tier. On the
    embedded tier, where Tansu 0.6.0 has none (its TLS cannot be enabled, its SASL rejects
    every user), a TLS terminator and a SCRAM proxy (tests/secure_proxy.py) in front of two
    brokers of their own, each advertising its proxy's address: so the same tests run on a
    machine without Java. (Session-scoped: their threads are not a test's leak.)"""
    if _SECURE:
        yield _SECURE[0]
        return
    if os.environ.get("UEE_TEST_BOOTSTRAP") or os.environ.get("UEE_TEST_KAFKA") == "container":
        pytest.skip("an existing cluster or a container: its TLS and SASL listeners are not "
                    "known to the tests (they run on the embedded and Apache Kafka tiers)")
    from tests.apache_kafka import SCRAM_PASSWORD, SCRAM_USER, Listeners, make_certificates
    from tests.secure_proxy import SecureProxy
    from uee.streams.broker import EmbeddedBroker, free_port

    folder = tmp_path_factory.mktemp("secure")
    ca_file, keystore = make_certificates(folder)
    ssl_port, sasl_port = free_port(), free_port()
    with SecureProxy(f"127.0.0.1:{(ssl_up := free_port())}", ssl_port, keystore) as tls, \
            SecureProxy(f"127.0.0.1:{(sasl_up := free_port())}", sasl_port, keystore,
                        users={SCRAM_USER: SCRAM_PASSWORD}) as sasl, \
            EmbeddedBroker(ssl_up, advertised=tls.address), \
            EmbeddedBroker(sasl_up, advertised=sasl.address):
        yield Listeners(plaintext="", ssl=tls.address, sasl_ssl=sasl.address, ca_file=ca_file)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a broker other than the embedded one, run only the tests that use it: the rest do
    not depend on which broker the session has, and already ran on the embedded tier."""
    if not os.environ.get("UEE_TEST_KAFKA") or os.environ.get("UEE_TEST_KAFKA") == "embedded":
        return
    keep = [item for item in items if "kafka" in getattr(item, "fixturenames", ())]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def uee_bin() -> str:
    """The installed `uee` console script, as a user would type it."""
    beside = Path(sys.executable).with_name("uee")
    found = str(beside) if beside.exists() else shutil.which("uee")
    assert found, "the uee command is not installed; run `make test`"
    return found


@pytest.fixture
def uee(uee_bin: str, tmp_path: Path) -> Callable[..., Completed]:
    """Run `uee ARGS...` in a subprocess; short group timeouts keep tests quick."""

    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Completed:
        full_env = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
        full_env.update({"UEE_SESSION_TIMEOUT_MS": "3000", "COLUMNS": "200", **(env or {})})
        done = subprocess.run([uee_bin, *args], capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=REPO)
        return Completed(done.returncode, done.stdout, done.stderr)

    return run


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def own_deployment(no_leaks: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test is its own deployment (Faust app, state tables, RocksDB folder), as two
    users' deployments would be: a worker of one test never joins another test's group."""
    monkeypatch.setenv("UEE_APP", f"t-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("UEE_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves Python threads running or changes the environment."""
    env_before = dict(os.environ)
    threads_before = set(threading.enumerate())
    yield
    changed = (set(os.environ) ^ set(env_before)) | {
        k for k in env_before if os.environ.get(k) != env_before[k]
    }
    leaked_env = changed - {"PYTEST_CURRENT_TEST"}
    assert not leaked_env, f"test changed environment variables: {sorted(leaked_env)}"
    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"
