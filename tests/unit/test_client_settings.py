"""One setting reaches every Kafka client uee makes: each client's librdkafka configuration
comes from Settings, and no module builds one by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from faust.auth import SASLCredentials
from pydantic import SecretStr

from tests.apache_kafka import make_certificates
from tests.conftest import REPO
from uee.streams.security import describe, faust_credentials
from uee.streams.settings import Settings, SettingsError, settings_for

CLIENTS = ("Consumer", "Producer", "AdminClient")


def test_every_client_configuration_carries_the_client_id_and_the_extra_properties(
    tmp_path: Path
) -> None:
    ca, _ = make_certificates(tmp_path)
    settings = Settings(bootstrap="h:9092", client_id="acme", security_protocol="SASL_SSL",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="etl",
                        sasl_password=SecretStr("s3cret"), ssl_ca_file=str(ca),
                        librdkafka={"socket.timeout.ms": "9000"})
    configs = {
        "agent consumer": settings.consumer_config("g"),
        "agent producer": settings.producer_config(),
        "admin": settings.admin_config(),
        "inspect": settings.inspect_config(),
        "control": settings.writer_config("control"),
    }
    for name, config in configs.items():
        assert config["security.protocol"] == "SASL_SSL", name
        assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) \
            == ("SCRAM-SHA-512", "etl", "s3cret"), name
        assert config["ssl.ca.location"] == str(ca), name
        assert config["socket.timeout.ms"] == "9000", name
        assert str(config["client.id"]).startswith("acme"), name
        assert config["bootstrap.servers"] == "h:9092", name
    # Faust's aiokafka clients get the same, from the same settings.
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "etl", "s3cret", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None  # verified against that CA


def test_the_extra_properties_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UEE_LIBRDKAFKA", "socket.timeout.ms=5000, client.rack=r1")
    monkeypatch.setenv("UEE_KAFKA_SOCKET_KEEPALIVE_ENABLE", "true")
    monkeypatch.setenv("UEE_CLIENT_ID", "etl")
    config = settings_for("h:1").admin_config()
    assert (config["socket.timeout.ms"], config["client.rack"]) == ("5000", "r1")
    assert config["socket.keepalive.enable"] == "true"  # UEE_KAFKA_<KEY>, dots as underscores
    assert config["client.id"] == "etl-admin"
    monkeypatch.setenv("UEE_LIBRDKAFKA", "security.protocol")
    with pytest.raises(SettingsError, match="UEE_LIBRDKAFKA"):
        settings_for("h:1")


@pytest.mark.parametrize("env, says", [
    ({"UEE_KAFKA_SECURITY_PROTOCOL": "SSL"}, "set UEE_SECURITY_PROTOCOL instead"),
    ({"UEE_LIBRDKAFKA": "sasl.password=x"}, "set UEE_SASL_PASSWORD instead"),
    ({"UEE_LIBRDKAFKA": "enable.auto.commit=true"}, "at-least-once"),
    ({"UEE_KAFKA_BOOTSTRAP_SERVERS": "h:9092"}, "set UEE_BOOTSTRAP"),
    ({"UEE_KAFKA_LINGER_MS": "50"}, "set UEE_LINGER_MS instead"),
    ({"UEE_SECURITY_PROTOCOL": "SASL_SSL"}, "needs UEE_SASL_MECHANISM"),
    ({"UEE_SECURITY_PROTOCOL": "TLS"}, "UEE_SECURITY_PROTOCOL"),
    ({"UEE_SASL_USERNAME": "etl"}, "set it to SASL_SSL"),
    ({"UEE_SECURITY_PROTOCOL": "SSL", "UEE_SSL_CA_FILE": "/no/ca.pem"}, "no such file"),
    ({"UEE_SECURITY_PROTOCOL": "SSL", "UEE_SSL_CA_FILE": __file__}, "not a PEM"),
    ({"UEE_SECURITY_PROTOCOL": "SSL", "UEE_SSL_CERT_FILE": __file__}, "UEE_SSL_KEY_FILE"),
    ({"UEE_SECURITY_PROTOCOL": "SASL_SSL", "UEE_SASL_MECHANISM": "PLAIN",
      "UEE_SASL_USERNAME": "u", "UEE_SASL_PASSWORD": "p", "UEE_SASL_PASSWORD_FILE": __file__},
     "not both"),
])
def test_bad_security_settings_say_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                               env: dict[str, str], says: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(says)) as caught:
        settings_for("h:1")
    assert caught.value.code == "CONFIG_INVALID"


def test_a_password_is_never_shown_and_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    for name, value in {"UEE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "UEE_SASL_MECHANISM": "PLAIN", "UEE_SASL_USERNAME": "etl",
                        "UEE_SASL_PASSWORD_FILE": str(secret)}.items():
        monkeypatch.setenv(name, value)
    settings = settings_for("h:1")
    assert settings.admin_config()["sasl.password"] == "from-a-file"
    monkeypatch.delenv("UEE_SASL_PASSWORD_FILE")
    monkeypatch.setenv("UEE_SASL_PASSWORD", "hunter2")
    settings = settings_for("h:1")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert "hunter2" not in describe(settings) and "hunter2" not in repr(
        faust_credentials(settings))


def test_no_module_builds_a_client_configuration_by_hand() -> None:
    """A client built from a dict literal would miss the settings (security, client id)."""
    found = []
    for folder in ("core", "dsl", "streams", "connectors", "testing"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in CLIENTS and node.args
                        and isinstance(node.args[0], ast.Dict)):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


def test_on_tansu_what_the_user_did_not_set_is_fitted_to_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from uee.streams.run import TANSU_FETCH_WAIT_MS, TANSU_SESSION_MS, for_tansu

    for name in ("UEE_FETCH_WAIT_MS", "UEE_SESSION_TIMEOUT_MS", "UEE_ASSIGNMENT_STRATEGY"):
        monkeypatch.delenv(name, raising=False)
    apache = Settings.from_env(bootstrap="h:9092").consumer_config("g")
    tansu = for_tansu(Settings.from_env(bootstrap="h:9092")).consumer_config("g")
    assert apache["fetch.wait.max.ms"] == 100  # answered as soon as records arrive there
    assert (tansu["fetch.wait.max.ms"], tansu["session.timeout.ms"],
            tansu["partition.assignment.strategy"]) == (TANSU_FETCH_WAIT_MS, TANSU_SESSION_MS,
                                                        "range")

    monkeypatch.setenv("UEE_FETCH_WAIT_MS", "250")
    chosen = for_tansu(Settings.from_env(bootstrap="h:9092")).consumer_config("g")
    assert chosen["fetch.wait.max.ms"] == 250
    assert chosen["session.timeout.ms"] == TANSU_SESSION_MS
