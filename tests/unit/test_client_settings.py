"""One setting reaches every Kafka client uee makes: each client's librdkafka configuration
comes from Settings, and no module builds one by hand."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO
from uee.streams.settings import Settings, SettingsError, settings_for

CLIENTS = ("Consumer", "Producer", "AdminClient")


def test_every_client_configuration_carries_the_client_id_and_the_extra_properties() -> None:
    settings = Settings(bootstrap="h:9092", client_id="acme",
                        librdkafka={"security.protocol": "SSL", "socket.timeout.ms": "9000"})
    configs = {
        "agent consumer": settings.consumer_config("g"),
        "agent producer": settings.producer_config(),
        "admin": settings.admin_config(),
        "inspect": settings.inspect_config(),
        "control": settings.writer_config("control"),
    }
    for name, config in configs.items():
        assert config["security.protocol"] == "SSL", name
        assert config["socket.timeout.ms"] == "9000", name
        assert str(config["client.id"]).startswith("acme"), name
        assert config["bootstrap.servers"] == "h:9092", name


def test_the_extra_properties_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UEE_LIBRDKAFKA", "security.protocol=SASL_SSL, sasl.mechanism=PLAIN")
    monkeypatch.setenv("UEE_CLIENT_ID", "etl")
    config = settings_for("h:1").admin_config()
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "PLAIN")
    assert config["client.id"] == "etl-admin"
    monkeypatch.setenv("UEE_LIBRDKAFKA", "security.protocol")
    with pytest.raises(SettingsError, match="UEE_LIBRDKAFKA"):
        settings_for("h:1")


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
