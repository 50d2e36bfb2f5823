"""The names uee gives to what it keeps in Kafka besides the user's topics: the control
topic, the Faust workers' apps (Faust names its own topics after them), replay ledgers.
`uee topics list` hides these unless asked."""

from __future__ import annotations

import hashlib
import re

CONTROL_TOPIC = "uee.control"
APP_PREFIX = "uee.worker."
LEDGER_SUFFIX = ".replayed"


def ledger_topic(dlq_topic: str) -> str:
    """Where a DLQ's replays are remembered: one record per dead letter sent back."""
    return f"{dlq_topic}{LEDGER_SUFFIX}"


def is_internal(topic: str) -> bool:
    return topic == CONTROL_TOPIC or topic.startswith(APP_PREFIX) or topic.endswith(LEDGER_SUFFIX)


def app_id_for(segment_names: list[str]) -> str:
    """Deterministic from the segments it runs, and short enough for a group id. Faust names
    topics after it (`<app id>-__assignor-__leader`), and Apache Kafka allows only ASCII
    letters, digits, '.', '_' and '-' in a topic name (Tansu takes any): a merged agent's
    group `uee.a+b` becomes `a_b.<hash of a+b>` here (the hash keeps `a_b` itself apart)."""
    named = "+".join(sorted(name.removeprefix("uee.") for name in segment_names))
    joined = _NOT_IN_TOPIC_NAMES.sub("_", named)
    if joined != named:
        joined = f"{joined}.{hashlib.sha1(named.encode()).hexdigest()[:8]}"
    if len(joined) <= 80:
        return f"{APP_PREFIX}{joined}"
    return f"{APP_PREFIX}{hashlib.sha1(joined.encode()).hexdigest()[:16]}"


_NOT_IN_TOPIC_NAMES = re.compile(r"[^A-Za-z0-9._-]")
