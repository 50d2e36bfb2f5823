"""Each contender is a script: `python -m bench.contenders.X SPEC`, SPEC a JSON object:

    {"bootstrap": ..., "source": ..., "sinks": [...], "records": N, "outputs": M,
     "case": "json" | "avro" | "shared" | "shared-alone", "session_timeout_ms": T}

It consumes the `records` input records of `source`, writes its results to `sinks`, exits, and
prints one JSON line, {"records": n} plus anything it measured of itself. The harness times
every contender the same way, from the output records' timestamps at the sink.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sys.argv[1])
    return loaded


def report(**measured: Any) -> None:
    print(json.dumps(measured), flush=True)
