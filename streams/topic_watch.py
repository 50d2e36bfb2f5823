"""Notices a topic deleted under a running pipeline, so the run stops with what happened.

Nothing in the clients says so: on Apache Kafka a consumer whose topic is deleted waits
silently forever, and a producer's records either fail or land in a topic the broker
creates again with its own defaults. So a thread describes the run's topics every few
seconds and compares their topic ids (KIP-516) with those seen at the start: a topic that
is missing, or that has another id, was deleted (and perhaps created again).

Why a stop, not a wait: a topic created again by someone else has other partitions and
configs, and a pipeline that kept writing into it would hide that. Stopping between batches
keeps the guarantee: what was committed was delivered, the rest is read again on restart.
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from uee.errors import UeeError
from uee.streams.settings import settings_for


class TopicDeletedError(UeeError):
    code = "TOPIC_DELETED"


class TopicWatch:
    """Describes `roles`' topics (topic -> what it is to the run) every `every_s` seconds on
    its own thread; `raise_if_deleted` is called by the run between its own checks."""

    def __init__(self, bootstrap: str, roles: dict[str, str], every_s: float = 2.0,
                 timeout_s: float = 5.0) -> None:
        self._roles = dict(roles)
        self._every_s = every_s
        self._timeout_s = timeout_s
        self._admin = AdminClient(settings_for(bootstrap).admin_config("watch"))
        self._ids: dict[str, str] = {}
        self._deleted: TopicDeletedError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="uee-topic-watch", daemon=True)

    def start(self) -> None:
        """Learn the topics' ids now (they exist: the run created them), then keep looking."""
        self._ids = {t: i for t, i in self._describe(list(self._roles)).items() if i is not None}
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a describe in progress ends within its timeout
            self._thread.join(self._timeout_s + 1)

    def raise_if_deleted(self) -> None:
        if self._deleted is not None:
            raise self._deleted

    def confirm(self, topics: list[str]) -> None:
        """Raise now if one of these topics was deleted. For a broker that acknowledges
        records written to a deleted topic (Tansu 0.6.0): called after a batch was
        acknowledged and before its offsets are committed, it keeps such a batch uncommitted.
        A broker that does not answer leaves the batch to be committed: it acknowledged it,
        unless a deletion was already seen (by this check or the watch): the stop that
        follows commits the last batch again, and a describe that times out then must not
        let it through."""
        self.raise_if_deleted()
        ids = self._describe(topics)
        for topic in topics:
            if topic in ids and topic in self._ids and ids[topic] != self._ids[topic]:
                self._deleted = self._deleted or self._error(topic, ids[topic] is not None)
                raise self._deleted

    def _watch(self) -> None:
        while not self._stop.wait(self._every_s):
            ids = self._describe(list(self._roles))
            for topic, first_id in self._ids.items():
                if topic not in ids:  # not answered (broker away): not a deletion
                    continue
                now = ids[topic]
                if now != first_id:
                    self._deleted = self._error(topic, created_again=now is not None)
                    return

    def _describe(self, topics: list[str]) -> dict[str, str | None]:
        """Topic -> id, None for a topic the broker does not know; topics the broker did not
        answer for are left out."""
        ids: dict[str, str | None] = {}
        try:
            futures = self._admin.describe_topics(TopicCollection(topics),
                                                  request_timeout=self._timeout_s)
        except KafkaException:
            return ids
        for topic, future in futures.items():
            try:
                description: Any = future.result(self._timeout_s)
                ids[topic] = str(description.topic_id)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    ids[topic] = None
            except TimeoutError:
                pass
        return ids

    def _error(self, topic: str, created_again: bool) -> TopicDeletedError:
        what = "was deleted and created again" if created_again else "was deleted"
        return TopicDeletedError(
            f"topic '{topic}' ({self._roles[topic]}) {what} while the run was going on; "
            "the run stopped: every record committed before was delivered, the rest is read "
            "again on restart. `uee run` creates missing topics: run it again once the topic "
            "is as you want it (or take it out of the pipeline)")
