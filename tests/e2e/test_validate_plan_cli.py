"""`uee validate` and `uee plan` as a user types them (no Kafka needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Completed

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]
GOLDEN = REPO / "tests" / "golden"


def test_validate_ok_lists_the_pipelines(uee: Uee) -> None:
    done = uee("validate", "examples")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("ok: ")


def test_validate_prints_every_error_one_per_line_and_exits_1(uee: Uee, tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(
        "pipeline: one\nsource: {kafka: {topic: a}}\nstages:\n  - filtr: x\n"
        "  - map: {y: 'lenn(x)'}\nsink: {kafka: {topic: b}}\n")
    (tmp_path / "two.yml").write_text(
        "pipeline: two\nsource: {kafka: {topic: b}}\nstages:\n"
        "  - route: [{when: x, to: nowhere}]\nsink: {kafka: {topic: a}}\n")
    done = uee("validate", str(tmp_path))
    assert done.code == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"{tmp_path}/one.yaml:4:5: error[DSL_UNKNOWN_STAGE]: unknown kind 'filtr' in stage 1 of "
        "pipeline 'one' (did you mean 'filter'?)",
        f"{tmp_path}/one.yaml:5:15: error[DSL_BAD_EXPR]: unknown function 'lenn' in field 'y' "
        "of stage 2 of pipeline 'one' (map) (did you mean 'len'?)",
        f"{tmp_path}/two.yml:4:13: error[DSL_UNKNOWN_SINK_NAME]: route of pipeline 'two' sends "
        "to sink 'nowhere', which the pipeline does not define (sinks: default)",
    ]
    assert done.stdout == ""


def test_validate_finds_cycles_across_files(uee: Uee, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("pipeline: a\nsource: {kafka: {topic: x}}\n"
                                     "sink: {kafka: {topic: y}}\n")
    (tmp_path / "b.yaml").write_text("pipeline: b\nsource: {kafka: {topic: y}}\n"
                                     "sink: {kafka: {topic: x}}\n")
    done = uee("validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert done.code == 1
    assert "error[DSL_CYCLE]: pipelines form a cycle through their topics: a -> b -> a" in (
        done.stderr)


def test_plan_text_json_mermaid(uee: Uee) -> None:
    case = str(GOLDEN / "tree-across-files")
    text = uee("plan", case)
    assert text.code == 0, text.stderr
    assert "[shared by all-buys, big-buys, routed-buys]" in text.stdout
    assert "consumer group uee.all-buys+big-buys+routed-buys" in text.stdout
    assert "stage runs per source record: 8 if every pipeline ran alone, 5 in this plan" in (
        text.stdout)

    document = json.loads(uee("plan", case, "--format", "json").stdout)
    assert document["stats"]["unmerged_stage_runs"] == 8
    assert document["stats"]["merged_stage_runs"] == 5
    assert {e["from"] for e in document["edges"]} >= {"source:uee.all-buys+big-buys+routed-buys"}

    unmerged = json.loads(uee("plan", case, "--format", "json", "--no-optimize").stdout)
    assert unmerged["stats"]["merged_stage_runs"] == 8
    assert unmerged["stats"]["agents"] == 3

    mermaid = uee("plan", case, "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart LR")
    assert "classDef shared" in mermaid.stdout


def test_plan_of_a_bad_file_is_the_same_errors(uee: Uee, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: p\nsource: {kafka: {topic: a}}\nsink: {kafka: {topik: b}}\n")
    done = uee("plan", str(path))
    assert done.code == 1
    assert "error[DSL_UNKNOWN_KEY]" in done.stderr and "Traceback" not in done.stderr
