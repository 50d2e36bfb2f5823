"""uee itself: the same work as pipeline files, run by the `uee` command as a user would."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.contenders import report, spec
from bench.work import ORDER_IN, ORDER_OUT, SHARED_PIPELINES, UEE_AVRO, UEE_JSON, UEE_SHARED


def write_pipelines(case: str, source: str, sinks: list[str], workdir: Path) -> Path:
    pipeline = workdir / "bench.yaml"
    if case == "json":
        pipeline.write_text(UEE_JSON.format(source=source, sink=sinks[0], group=f"uee.{sinks[0]}"))
    elif case == "avro":
        (workdir / "order_in.avsc").write_text(json.dumps(ORDER_IN))
        (workdir / "order_out.avsc").write_text(json.dumps(ORDER_OUT))
        pipeline.write_text(UEE_AVRO.format(source=source, sink=sinks[0]))
    else:
        pipeline.write_text("".join(
            UEE_SHARED.format(n=n, count=SHARED_PIPELINES, source=source, sink=sinks[n])
            for n in range(SHARED_PIPELINES)))
    return pipeline


def main() -> None:
    work = spec()
    workdir = Path(tempfile.mkdtemp(prefix="bench-uee-"))
    pipeline = write_pipelines(work["case"], work["source"], work["sinks"], workdir)
    stats_path = workdir / "stats.json"
    uee = Path(sys.executable).with_name("uee")
    command = [str(uee), "run", str(pipeline), "--bootstrap", work["bootstrap"],
               "--until-idle", "1", "--quiet", "--stats-json", str(stats_path)]
    if work["case"] == "shared-alone":
        command.append("--no-optimize")
    # uee's own settings, as a user runs it: it picks its session timeout for the broker.
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    stats = json.loads(stats_path.read_text())["pipelines"]
    records = max(p["records_in"] for p in stats.values())
    # ru_maxrss of the children waited for: the `uee run` process (kilobytes on Linux).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report(records=records, peak_rss_mb=round(peak_rss_mb, 1))


if __name__ == "__main__":
    main()
