"""Typed runtime settings with UEE_* environment overrides; librdkafka keys are rendered here."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from uee.errors import UeeError
from uee.streams import security
from uee.streams.security import passthrough


def kafka_logger() -> logging.Logger:
    """Where librdkafka's own log lines go: Python logging, not straight onto stderr, so a
    command's output stays its own; uee reports unreachable brokers in its own words."""
    return logging.getLogger("uee.kafka")


class SettingsError(UeeError):
    code = "CONFIG_INVALID"


_COMMITS = ("uee commits a source's offset itself, once its records reached every sink or "
            "the DLQ (at-least-once)")
# librdkafka keys uee sets itself, with what to do instead: given in UEE_LIBRDKAFKA or
# UEE_KAFKA_*, uee's own value would replace them without a word (the security keys are
# streams.security's to refuse).
OWNED = {
    "bootstrap.servers": "set UEE_BOOTSTRAP (or --bootstrap) instead",
    "client.id": "set UEE_CLIENT_ID instead",
    "group.id": "uee names each source's consumer group after its pipelines",
    "enable.auto.commit": _COMMITS,
    "enable.auto.offset.store": _COMMITS,
    "auto.offset.reset": "a new consumer group starts at the earliest offset: nothing is "
                         "skipped",
    "session.timeout.ms": "set UEE_SESSION_TIMEOUT_MS instead",
    "heartbeat.interval.ms": "it follows UEE_SESSION_TIMEOUT_MS (a fifth of it)",
    "partition.assignment.strategy": "set UEE_ASSIGNMENT_STRATEGY instead",
    "fetch.wait.max.ms": "set UEE_FETCH_WAIT_MS instead",
    "linger.ms": "set UEE_LINGER_MS instead",
    "message.max.bytes": "set UEE_MAX_RECORD_BYTES instead",
    "message.timeout.ms": "set UEE_FLUSH_TIMEOUT_S instead",
    "acks": "every write waits for all in-sync replicas (at-least-once)",
    "allow.auto.create.topics": "uee creates the topics it writes, with "
                                "UEE_TOPIC_PARTITIONS and UEE_REPLICATION_FACTOR",
    "enable.partition.eof": "uee sets it per client",
    "delivery.report.only.error": "uee sets it per client",
    "fetch.queue.backoff.ms": "uee sets it for its batch consumers",
    "queued.max.messages.kbytes": "uee sets it for its batch consumers",
    "batch.num.messages": "uee sets it for its producers",
    "queue.buffering.max.messages": "uee sets it for its producers",
}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str | None = Field(None, description="Kafka bootstrap servers, HOST:PORT[,...]")
    durable: str | None = Field(None, description="without a bootstrap, the embedded broker "
                                "keeps its data in this folder (on SeaweedFS), across restarts")
    app: str = Field("uee", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                     description="the deployment: every worker of one app shares its tables, "
                     "status and its quota controller; Kafka topic-name characters")
    state_dir: str | None = Field(None, description="where workers keep their RocksDB tables "
                                  "(default: <temp dir>/uee); a cache of the changelogs")
    recovery_timeout_s: float = Field(30.0, gt=0, description="how long a provider with state "
                                      "waits for the tables to be recovered")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve Prometheus "
                                     "metrics at http://<metrics_host>:<port>/metrics")
    metrics_host: str = Field("127.0.0.1", min_length=1, description="the address the metrics "
                              "endpoint binds (0.0.0.0: every interface, e.g. in a container)")
    quota_policy: Literal["fixed", "step", "adaptive"] = Field(
        "adaptive", description="how the quota controller changes permits: adaptive (to the "
        "measured throughput, then the gradient; spikes only for a pipeline on the default "
        "target), step (20% per two breaches), fixed (never)")
    quota_interval_s: float = Field(1.0, gt=0, description="how often workers sample and the "
                                    "quota controller decides")
    quota_warmup_s: float = Field(5.0, ge=0, description="how long after its first records a "
                                  "pipeline's samples are not taken (connections, caches and "
                                  "the broker warm up)")
    quota_max_p99_ms: float = Field(30.0, gt=0, description="a pipeline's P99 batch latency "
                                    "above this is a breach, unless its quota section says")
    quota_max_saturation: float = Field(80.0, gt=0, le=100, description="percent of the time "
                                        "a pipeline's agent is busy above which the step "
                                        "policy sees a breach, unless its quota section says")
    batch_size: int = Field(5000, ge=1, le=1_000_000, description="records per batch")
    poll_timeout_s: float = Field(0.1, gt=0, description="how long one poll waits for records")
    fetch_wait_ms: int = Field(100, ge=1, le=10_000, description="how long the broker may "
                               "hold a source's fetch that has nothing to read yet (20 on "
                               "Tansu, which answers it only when this is over)")
    switch_interval_ms: float = Field(1.0, gt=0, le=100, description="how long a worker's "
                                      "thread may keep the interpreter's lock while another "
                                      "waits for it (Python's default: 5 ms)")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout")
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        "cooperative-sticky", description="how a consumer group shares partitions")
    linger_ms: int = Field(5, ge=0, description="producer linger before sending a batch")
    flush_timeout_s: float = Field(30.0, gt=0, description="how long a batch may wait for acks")
    shutdown_timeout_s: float = Field(30.0, gt=0, description="how long the whole drain may "
                                      "take (agents, final checkpoints, Faust)")
    max_record_bytes: int = Field(1_000_000, ge=1024, description="larger records go to the DLQ")
    topic_partitions: int = Field(3, ge=1, description="partitions of topics uee creates")
    replication_factor: int = Field(1, ge=1, description="replication of topics uee creates")
    client_id: str = Field("uee", min_length=1, description="client.id prefix of every client")
    librdkafka: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka properties for every client, "
        "as KEY=VALUE,KEY=VALUE (security.protocol, sasl.*, ssl.*, socket.timeout.ms ...)")

    # Secure connections (streams.security renders them for librdkafka and aiokafka).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every client connects to Kafka")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="the SASL mechanism (with SASL_SSL or SASL_PLAINTEXT)")
    sasl_username: str | None = Field(None, description="the SASL user")
    sasl_password: SecretStr | None = Field(None, description="the SASL password (never "
                                            "printed)")
    sasl_password_file: str | None = Field(None, description="a file holding the SASL "
                                           "password (instead of UEE_SASL_PASSWORD)")
    ssl_ca_file: str | None = Field(None, description="PEM file of the CA that signed the "
                                    "brokers' certificates (default: the system's)")
    ssl_cert_file: str | None = Field(None, description="PEM client certificate (mutual TLS)")
    ssl_key_file: str | None = Field(None, description="PEM key of the client certificate")

    @model_validator(mode="after")
    def _secure(self) -> Settings:
        found = [f"librdkafka property {key} is uee's own: {OWNED[key]}; remove it from "
                 "UEE_LIBRDKAFKA or UEE_KAFKA_*" for key in self.librdkafka if key in OWNED]
        found += security.problems(self)
        if found:
            raise SettingsError("; ".join(found))
        return self

    @field_validator("librdkafka", mode="before")
    @classmethod
    def _properties(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs = [item.strip() for item in value.split(",") if item.strip()]
        bad = [item for item in pairs if "=" not in item]
        if bad:
            raise ValueError(f"{bad[0]!r} is not KEY=VALUE")
        return dict(item.split("=", 1) for item in pairs)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then UEE_<FIELD> variables, then explicit (command-line) values."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"UEE_{name.upper()}")
            if env not in (None, ""):
                values[name] = env
        extra = passthrough(dict(os.environ))
        if extra:  # UEE_KAFKA_<KEY> beside UEE_LIBRDKAFKA's KEY=VALUE list
            try:
                listed = cls._properties(values.get("librdkafka", {}))
            except ValueError as exc:
                raise SettingsError(f"setting 'librdkafka' (UEE_LIBRDKAFKA): {exc}") from exc
            values["librdkafka"] = {**listed, **extra}
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise SettingsError(
                f"setting '{field}' (UEE_{field.upper()}): {first['msg']}"
            ) from exc

    def with_bootstrap(self, bootstrap: str) -> Settings:
        return self.model_copy(update={"bootstrap": bootstrap})

    # -- librdkafka configuration, in one place: every client of uee gets its own here -----

    def _common(self, role: str | None = None) -> dict[str, Any]:
        if not self.bootstrap:
            raise SettingsError("no Kafka bootstrap address; pass --bootstrap or set UEE_BOOTSTRAP")
        return {**self.librdkafka, **security.librdkafka(self),
                "bootstrap.servers": self.bootstrap,
                "client.id": f"{self.client_id}-{role}" if role else self.client_id,
                "logger": kafka_logger()}

    def admin_config(self, role: str = "admin") -> dict[str, Any]:
        """Topic administration and metadata; `role` names the client (admin, watch)."""
        # Describing never creates a topic; a producer-type client could, were this true.
        return {**self._common(role), "allow.auto.create.topics": False}

    def inspect_config(self, role: str = "inspect") -> dict[str, Any]:
        """A consumer that reads without a group commit: offsets, `topics tail`, the control
        topic, the DLQ."""
        return {
            **self._common(role),
            "group.id": f"{self.client_id}-{role}-{uuid.uuid4().hex[:12]}",  # never committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }

    def control_config(self) -> dict[str, Any]:
        """The control plane's consumer: an inspecting one with a short fetch wait. The
        embedded broker answers a fetch only when its wait is over, whatever came in
        meanwhile: a sample or a decision waiting librdkafka's default 500 ms there would be
        half the controller's time to react. Idle fetches cost little."""
        return {**self.inspect_config("control"), "fetch.wait.max.ms": 50}

    def writer_config(self, role: str) -> dict[str, Any]:
        """A producer for uee's own records (control states, replays, the replay ledger):
        acknowledged by every replica, never creating a topic by accident."""
        return {**self._common(role), "linger.ms": 5, "acks": "all",
                "allow.auto.create.topics": False}

    def state_config(self) -> dict[str, Any]:
        """The producer of state events. It never expires one (librdkafka's default gives up
        after 5 minutes): a checkpoint waits for the broker as long as it is away, like a
        sink's batch behind an open breaker (streams.statelog.PatientState)."""
        return {**self.writer_config("state"), "message.timeout.ms": 0}

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        return {
            **self._common(),
            "group.id": group_id,
            "enable.auto.commit": False,  # uee commits after sinks and DLQ acknowledged
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(250, self.session_timeout_ms // 5),
            # cooperative-sticky: a worker joining or leaving moves only the partitions that
            # must move, the others keep flowing (eager strategies stop every member).
            "partition.assignment.strategy": self.assignment_strategy,
            # librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s) once its
            # prefetch queue is full; a batch consumer drains that queue in milliseconds and
            # then waits idle for the rest of the second (measured: 200k records took 1.3 s
            # instead of 0.3 s). The queue's size limits still bound memory.
            "fetch.queue.backoff.ms": 10,
            "queued.max.messages.kbytes": 32_768,
            # Apache Kafka answers a waiting fetch as soon as records arrive; Tansu only when
            # the wait is over, so there it is a record's latency (streams.run.for_tansu).
            "fetch.wait.max.ms": self.fetch_wait_ms,
        }

    def producer_config(self) -> dict[str, Any]:
        return {
            **self._common(),
            "linger.ms": self.linger_ms,
            "acks": "all",
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            # Room for the largest record uee lets through, plus headers and framing.
            "message.max.bytes": self.max_record_bytes + 65_536,
            # A record not delivered within the flush timeout fails its batch (nothing of it
            # is committed) instead of waiting in librdkafka's queue for minutes.
            "message.timeout.ms": int(self.flush_timeout_s * 1000),
            # Only failures call back into Python: a delivered record costs no Python work.
            "delivery.report.only.error": True,
            # uee creates the topics it writes before it runs; one deleted meanwhile must not
            # come back with the broker's defaults (see streams.topic_watch).
            "allow.auto.create.topics": False,
        }


def settings_for(bootstrap: str) -> Settings:
    """This process's settings (UEE_* variables) aimed at `bootstrap`: what a helper given
    only an address builds its client from, so that one setting (security, client id,
    timeouts) reaches every client uee makes."""
    return Settings.from_env(bootstrap=bootstrap)
