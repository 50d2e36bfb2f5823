"""The names uee gives to what it keeps in Kafka besides the user's topics: the control
topic, the deployment's Faust topics (Faust names them after the app), replay ledgers.
`uee topics list` hides these unless asked."""

from __future__ import annotations

CONTROL_TOPIC = "uee.control"
LEGACY_APP_PREFIX = "uee.worker."  # Faust apps of uee 0.1, one per set of agents
FAUST_LEADER_SUFFIX = "-__assignor-__leader"
# The deployment's state tables (streams.state), named here for `uee topics list`.
STATE_TABLES = ("providers", "checkpoints", "pipelines", "deployment", "diffs")
LEDGER_SUFFIX = ".replayed"


def ledger_topic(dlq_topic: str) -> str:
    """Where a DLQ's replays are remembered: one record per dead letter sent back."""
    return f"{dlq_topic}{LEDGER_SUFFIX}"


def is_internal(topic: str, app: str = "uee") -> bool:
    """uee's own topics: the control topic, replay ledgers, and a deployment's Faust topics
    (`<app>-state`, `<app>-<table>-changelog`, `<app>-__assignor-__leader`); those of other
    apps are known by Faust's suffixes."""
    return (topic == CONTROL_TOPIC or topic.endswith(LEDGER_SUFFIX)
            or topic.startswith((f"{app}-", LEGACY_APP_PREFIX))
            or topic.endswith(FAUST_LEADER_SUFFIX)
            or any(topic.endswith(f"-{table}-changelog") for table in STATE_TABLES))
