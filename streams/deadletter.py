"""Dead-letter records: the original bytes and headers, plus the error's context.

Header names follow Kafka Connect's (`__connect.errors.*`) so existing tooling
reads them, and uee's own (`uee.*`) carry the pipeline, stage and stable code.
"""

from __future__ import annotations

import datetime
import traceback
from collections.abc import Iterable, Iterator

from connectors.base import Headers, RecordOrigin
from streams.kernel import Failure

STACKTRACE_LIMIT = 4000  # bytes: enough to see where, small enough not to bloat the topic


def dead_letter_headers(pipeline: str, failure: Failure, origin: RecordOrigin) -> Headers:
    error = failure.error
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    own: Headers = [
        ("uee.pipeline", pipeline.encode()),
        ("uee.stage", failure.slot.stage_for(pipeline).encode()),
        ("uee.error.code", failure.code.encode()),
        ("uee.error.message", failure.message.encode()),
        ("uee.failed.at", datetime.datetime.now(datetime.UTC).isoformat().encode()),
        ("__connect.errors.exception.class.name", type(error).__name__.encode()),
        ("__connect.errors.exception.message", failure.message.encode()),
        ("__connect.errors.exception.stacktrace", stack.encode()[:STACKTRACE_LIMIT]),
    ]
    if origin.topic is not None:
        own += [
            ("__connect.errors.topic", origin.topic.encode()),
            ("__connect.errors.partition", str(origin.partition).encode()),
            ("__connect.errors.offset", str(origin.offset).encode()),
        ]
    return [*origin.headers, *own]


def per_pipeline(failures: Iterable[Failure]) -> Iterator[tuple[str, Failure]]:
    """(pipeline, failure) once per pipeline and source record; the first failure wins. A
    failure in a stage shared by several pipelines counts for each, as if each ran alone."""
    seen: set[tuple[str, int]] = set()
    for failure in failures:
        for pipeline in failure.slot.pipelines:
            if (pipeline, failure.index) not in seen:
                seen.add((pipeline, failure.index))
                yield pipeline, failure
