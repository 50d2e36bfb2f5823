"""What `pip install uee` puts on a machine: one import root, `uee`, with its schemas, and
nothing of the repository's bench or tests; and it runs a pipeline away from the repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(folder), str(REPO)], check=True, timeout=300)
    [built] = folder.glob("uee-*.whl")
    yield built


def test_the_wheel_installs_one_import_root(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"uee", "uee-0.1.0.dist-info"}
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert packages == {"uee", "uee/dsl", "uee/dsl/stages", "uee/streams", "uee/connectors",
                        "uee/schemas", "uee/testing"}
    assert "uee/schemas/order.avsc" in names and "uee/py.typed" in names


@pytest.mark.e2e
def test_the_installed_wheel_runs_a_pipeline_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    """Not editable, in a venv of its own, from a folder with no schemas/ beside it: the
    pipeline's `schema: order.avsc` is the one that ships with uee."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "orders.yaml").write_text(
        "pipeline: installed\n"
        "source: {generator: {count: 500, seed: 3}}\n"
        "stages:\n"
        "  - validate: {schema: order.avsc}\n"
        "  - filter: kind == 'buy'\n"
        "sink: {kafka: {topic: installed.out}}\n")
    done = subprocess.run([str(venv / "bin" / "uee"), "run", "orders.yaml", "--until-idle", "1"],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.startswith("│ installed ")]
    records_in, out, filtered, dead = (cell.strip() for cell in row.split("│")[2:6])
    assert (records_in, dead) == ("500", "0")
    assert int(out.replace(",", "")) + int(filtered.replace(",", "")) == 500
    imported = subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import uee.streams.cli, sys; print(uee.streams.cli.__file__)"],
                              cwd=work, capture_output=True, text=True, timeout=60, check=True)
    assert str(venv) in imported.stdout  # the installed copy, not the repository's folders
