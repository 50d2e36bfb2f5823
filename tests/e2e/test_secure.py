"""Secure connections for real: every `uee` command through SSL and SASL_SSL (SCRAM-SHA-512)
listeners, Faust's clients included, and a wrong password, an unknown CA and a TLS port
spoken to in plaintext refused with one clear line each, never a hang. The listeners are
Apache Kafka's on its tier, a TLS terminator and a SCRAM proxy in front of the embedded
broker on the other (the `secure_listeners` fixture). The tests' own clients go through the
same listener (the proxied brokers have no other way in)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import helpers
from tests.apache_kafka import Listeners, make_certificates
from tests.conftest import Completed
from tests.helpers import sink_records, unique
from uee.streams.settings import settings_for
from uee.streams.state import changelog_topic
from uee.streams.topics import describe_topic, ensure_topics

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def sasl_env(listeners: Listeners, password_file: Path) -> dict[str, str]:
    return {"UEE_SECURITY_PROTOCOL": "SASL_SSL", "UEE_SASL_MECHANISM": listeners.sasl_mechanism,
            "UEE_SASL_USERNAME": listeners.sasl_username,
            "UEE_SASL_PASSWORD_FILE": str(password_file),
            "UEE_SSL_CA_FILE": str(listeners.ca_file)}


def shown(done: Completed) -> str:
    return done.stdout + done.stderr


@contextmanager
def as_uee(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[None]:
    """The test's own clients with these settings (uee's helpers read them from UEE_*)."""
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Into a new topic, through the settings of `as_uee` (uee's writer never creates one)."""
    ensure_topics(bootstrap, [topic], 1, 1)
    helpers.produce(bootstrap, topic, records, settings_for(bootstrap).writer_config("test"))


def test_every_command_works_through_sasl_ssl_and_the_password_is_never_shown(
    secure_listeners: Listeners, uee: Uee, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners = secure_listeners
    secret = tmp_path / "password"
    secret.write_text(listeners.sasl_password + "\n")
    env = sasl_env(listeners, secret)
    name, source, sink = unique("sec"), unique("sec.in"), unique("sec.out")
    with as_uee(monkeypatch, env):
        produce(listeners.sasl_ssl, source, [
            *((str(i).encode(), json.dumps({"id": i, "price": i % 7}).encode())
              for i in range(300)), (b"bad", b"not json")])
    path = tmp_path / "sec.yaml"
    # A diff stage: its hashes go through Faust's tables, so Faust's clients connect too.
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    "stages: [{diff: {key: id}}]\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    bootstrap = ("--bootstrap", listeners.sasl_ssl)
    run = uee("run", str(path), *bootstrap, "--until-idle", "2", env=env)
    assert run.code == 0, run.stderr
    with as_uee(monkeypatch, env):
        assert len(sink_records(listeners.sasl_ssl, sink)) == 300
    done = {args: uee(*args, *bootstrap, env=env) for args in (
        ("topics", "list"), ("topics", "describe", sink), ("topics", "tail", sink),
        ("dlq", "list"), ("dlq", "show", f"{name}.dlq"), ("status", "--json"))}
    for args, command in done.items():
        assert command.code == 0, (args, command.stderr)
    assert sink in done["topics", "list"].stdout
    assert f"{name}.dlq" in done["dlq", "list"].stdout
    assert "not json" in done["dlq", "show", f"{name}.dlq"].stdout
    document = json.loads(done["status", "--json"].stdout)
    [row] = [p for p in document["providers"] if p["pipeline"] == name]
    assert row["state"] == "TERMINATED" and row["records"]["out"] == 300
    # Faust's clients connected too: its agent applied the state to its tables, which wrote
    # their changelogs (status alone could have read the events without it).
    with as_uee(monkeypatch, env):
        for table in ("providers", "diffs"):
            assert describe_topic(listeners.sasl_ssl,
                                  changelog_topic(os.environ["UEE_APP"], table)).records
    outputs = [shown(run), *(shown(command) for command in done.values())]
    # The password reached the broker and nothing else.
    assert not [o for o in outputs if listeners.sasl_password in o]


def test_the_ssl_listener_runs_a_pipeline(
    secure_listeners: Listeners, uee: Uee, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"UEE_SECURITY_PROTOCOL": "SSL", "UEE_SSL_CA_FILE": str(secure_listeners.ca_file)}
    name, source, sink = unique("tls"), unique("tls.in"), unique("tls.out")
    with as_uee(monkeypatch, env):
        produce(secure_listeners.ssl, source,
                [(str(i).encode(), b'{"n": %d}' % i) for i in range(200)])
    path = tmp_path / "tls.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    run = uee("run", str(path), "--bootstrap", secure_listeners.ssl, "--until-idle", "2",
              env=env)
    assert run.code == 0, run.stderr
    with as_uee(monkeypatch, env):
        assert len(sink_records(secure_listeners.ssl, sink)) == 200
    status = uee("status", "--bootstrap", secure_listeners.ssl, env=env)
    assert status.code == 0 and name in status.stdout, status.stderr


def refused(uee: Uee, bootstrap: str, env: dict[str, str]) -> tuple[Completed, float]:
    started = time.monotonic()
    done = uee("topics", "list", "--bootstrap", bootstrap, env=env, timeout=60)
    return done, time.monotonic() - started


def one_error(done: Completed) -> str:
    assert done.code != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error[")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_a_wrong_password_is_refused_with_kafka_auth(
    secure_listeners: Listeners, uee: Uee, tmp_path: Path
) -> None:
    wrong = "not-the-password-" + unique("x")
    env = {**sasl_env(secure_listeners, tmp_path / "unused"), "UEE_SASL_PASSWORD": wrong}
    del env["UEE_SASL_PASSWORD_FILE"]
    done, took = refused(uee, secure_listeners.sasl_ssl, env)
    error = one_error(done)
    assert error.startswith("error[KAFKA_AUTH]") and "UEE_SASL_PASSWORD" in error, error
    assert wrong not in shown(done)
    assert took < 20, f"refused after {took:.1f}s"


def test_an_unknown_ca_and_plaintext_to_a_tls_port_are_refused_with_kafka_tls(
    secure_listeners: Listeners, uee: Uee, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = make_certificates(other)  # a CA that did not sign the broker's certificate
    done, took = refused(uee, secure_listeners.ssl, {"UEE_SECURITY_PROTOCOL": "SSL",
                                                     "UEE_SSL_CA_FILE": str(other_ca)})
    error = one_error(done)
    assert error.startswith("error[KAFKA_TLS]") and "UEE_SSL_CA_FILE" in error, error
    assert took < 20, f"refused after {took:.1f}s"
    done, took = refused(uee, secure_listeners.ssl, {})
    error = one_error(done)
    assert error.startswith("error[KAFKA_TLS]") and "UEE_SECURITY_PROTOCOL=SSL" in error, error
    assert took < 20, f"refused after {took:.1f}s"
