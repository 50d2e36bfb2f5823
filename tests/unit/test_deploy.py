"""What can be checked of the container deployment without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML

from uee.dsl.compiler import load_pipelines
from uee.streams.cli import cli

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_parses_and_every_service_has_an_image_or_a_build_context() -> None:
    services = compose()["services"]
    assert {"kafka", "topic-init", "quickstart", "enrich"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            context = REPO / (service["build"] if isinstance(service["build"], str)
                              else service["build"]["context"])
            assert (context / "Dockerfile").is_file(), name
        else:
            assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", service["image"]), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_kafka_runs_in_kraft_mode() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]


def test_worker_commands_are_real_uee_invocations_of_valid_pipelines() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["uee"]' in dockerfile
    for source in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    workers = {n: s for n, s in compose()["services"].items() if "build" in s}
    assert workers
    for name, service in workers.items():
        args = service["command"]
        assert args[0] == "run", name
        context = cli.make_context("uee", list(args))  # raises on a usage error
        with context:
            sub = cli.get_command(context, args[0])
            assert isinstance(sub, click.Command)
            sub_context = sub.make_context("run", list(args[1:]))
        files = sub_context.params["files"]
        assert all((REPO / f).is_file() for f in files), files
        assert load_pipelines([REPO / f for f in files])


def test_topic_init_creates_the_topics_the_workers_use() -> None:
    command = " ".join(compose()["services"]["topic-init"]["command"])
    for path in ("examples/quickstart.yaml", "examples/orders-enrich.yaml"):
        for pipeline in load_pipelines([REPO / path]):
            for sink in pipeline.sinks:
                assert sink.topic in command
            assert pipeline.dlq_topic in command
