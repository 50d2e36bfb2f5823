"""uee itself: the same work as a pipeline file, run by the `uee` command as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.work import UEE_PIPELINE


def main() -> None:
    bootstrap, source, sink = sys.argv[1], sys.argv[2], sys.argv[3]  # the count: --until-idle
    workdir = Path(tempfile.mkdtemp(prefix="bench-uee-"))
    pipeline = workdir / "bench.yaml"
    pipeline.write_text(UEE_PIPELINE.format(source=source, sink=sink))
    stats_path = workdir / "stats.json"
    uee = Path(sys.executable).with_name("uee")
    env = {**os.environ, "UEE_SESSION_TIMEOUT_MS": "6000"}
    subprocess.run(
        [str(uee), "run", str(pipeline), "--bootstrap", bootstrap, "--until-idle", "1",
         "--quiet", "--stats-json", str(stats_path)],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    stats = json.loads(stats_path.read_text())["pipelines"]["bench-uee"]
    print(json.dumps({"records": stats["records_in"], "seconds": stats["busy_seconds"]}))


if __name__ == "__main__":
    main()
