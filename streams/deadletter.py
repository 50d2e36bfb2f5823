"""Dead-letter records: the original bytes and headers, plus the error's context.

Header names follow Kafka Connect's (`__connect.errors.*`) so existing tooling
reads them, and uee's own (`uee.*`) carry the pipeline, stage and stable code.
"""

from __future__ import annotations

import datetime
import traceback
from collections.abc import Iterable, Iterator

from uee.connectors.base import Headers, RecordOrigin
from uee.streams.errors import lookup
from uee.streams.kernel import Failure

STACKTRACE_LIMIT = 4000  # bytes: enough to see where, small enough not to bloat the topic


ATTEMPT = "uee.attempt"
MAX_REPLAYS = "uee.max_replays"


def attempt_of(headers: Headers) -> int:
    """How many times this record has been through a pipeline: 1, or more once replayed."""
    for name, value in headers:
        if name == ATTEMPT:
            try:
                return max(1, int(value))
            except ValueError:
                return 1
    return 1


def is_error_header(name: str) -> bool:
    return name.startswith(("uee.", "__connect.errors."))


def dead_letter_headers(pipeline: str, failure: Failure, origin: RecordOrigin,
                        max_replays: int = 3) -> Headers:
    error = failure.error
    code = lookup(failure.code)
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    own: Headers = [
        ("uee.pipeline", pipeline.encode()),
        ("uee.stage", failure.slot.stage_for(pipeline).encode()),
        ("uee.error.code", code.code.encode()),
        ("uee.error.message", failure.message.encode()),
        ("uee.error.retryable", b"true" if code.retryable else b"false"),
        (ATTEMPT, str(attempt_of(origin.headers)).encode()),
        (MAX_REPLAYS, str(max_replays).encode()),  # the pipeline's policy, for `uee dlq replay`
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
    # The record's own headers stay; error headers of an earlier failure (a replayed
    # record) give way to this one's.
    kept = [(name, value) for name, value in origin.headers if not is_error_header(name)]
    return [*kept, *own]


def per_pipeline(failures: Iterable[Failure]) -> Iterator[tuple[str, Failure]]:
    """(pipeline, failure) once per pipeline and source record; the first failure wins. A
    failure in a stage shared by several pipelines counts for each, as if each ran alone."""
    seen: set[tuple[str, int]] = set()
    for failure in failures:
        for pipeline in failure.slot.pipelines:
            if (pipeline, failure.index) not in seen:
                seen.add((pipeline, failure.index))
                yield pipeline, failure
