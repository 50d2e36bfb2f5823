"""The benchmark harness runs every contender and checks each output exactly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def test_bench_runs_all_contenders_and_checks_their_output(kafka: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--records", "3000", "--bootstrap", kafka],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("exactly as expected") == 3, done.stdout
    assert "uee / faust:" in done.stdout and "uee / raw:" in done.stdout
