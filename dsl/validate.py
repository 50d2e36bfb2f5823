"""Check loaded pipeline documents and build the IR, collecting every diagnostic.

Each check reports a stable code (README, "Error codes"), the file position, the
pipeline and stage it concerns, and a hint when one helps. The shape checks of
one pipeline run first (`Validator`), then the checks across pipelines
(`check_across`): duplicate names, cycles through topics.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from uee.connectors.registry import SOURCE_CONNECTORS
from uee.dsl.errors import Diagnostic, Position
from uee.dsl.expr import Expr, parse_expr
from uee.dsl.ir import (
    FORMATS,
    AvroSchema,
    CheckpointSection,
    ConnectorSource,
    DlqSection,
    KafkaSink,
    KafkaSource,
    Pipeline,
    QuotaSection,
    RouteRule,
    RouteStage,
    Source,
    Stage,
)
from uee.dsl.loader import Mapping, Node, Scalar, Sequence, kind_of
from uee.dsl.resolve import ResolveError, resolve_schema
from uee.dsl.stages import KINDS

# Names become topic, group and metric names, so they keep to Kafka's legal characters.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PIPELINE_KEYS = {"pipeline", "description", "source", "stages", "sink", "sinks", "dlq",
                 "checkpoint", "quota", "share", "on_error"}
ON_ERROR = ("dlq", "fail")
SINK_KINDS = {"kafka"}


def _did_you_mean(word: str, options: set[str]) -> str | None:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class Validator:
    """Checks pipeline documents, collecting every problem with its position. Its helpers
    (`mapping`, `expr`, `field_list`, `section`, `error`...) are also what stage kinds
    (uee.dsl.stages) and connectors' options use to read their part of a file."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.names: list[tuple[str, Position]] = []  # every pipeline name, valid pipeline or not

    def error(self, code: str, message: str, pos: Position, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, pos, hint))

    # -- generic shape checks --------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> Mapping | None:
        if isinstance(node, Mapping):
            return node
        self.error("DSL_WRONG_TYPE", f"{what} must be a mapping, got {kind_of(node)}", node.pos)
        return None

    def keys(self, node: Mapping, allowed: set[str], required: set[str], what: str) -> bool:
        ok = True
        for key, pos, _ in node:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f"allowed: {', '.join(sorted(allowed))}"
                if any(c in key for c in "()[]'\" "):
                    hint = ("inside {...} a comma ends the value: quote an expression that "
                            "contains one, e.g. key: 'coalesce(a, b)'")
                self.error("DSL_UNKNOWN_KEY", f"unknown key '{key}' in {what}", pos, hint)
                ok = False
        for key in sorted(required - set(node.keys())):
            self.error("DSL_MISSING_KEY", f"{what} needs the key '{key}'", node.pos)
            ok = False
        return ok

    def section(self, node: Node, allowed: set[str], required: set[str], what: str
                ) -> tuple[Mapping | None, bool]:
        """A mapping and whether its keys are right; the caller still checks the values of
        the known keys, so that one unknown key does not hide the other problems."""
        spec = self.mapping(node, what)
        if spec is None:
            return None, False
        return spec, self.keys(spec, allowed, required, what)

    def string(self, node: Node | None, what: str) -> str | None:
        if isinstance(node, Scalar) and isinstance(node.value, str) and node.value.strip():
            return node.value
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be a non-empty string, got "
                       f"{kind_of(node)}", node.pos)
        return None

    def integer(self, node: Node | None, what: str, minimum: int) -> int | None:
        if isinstance(node, Scalar) and type(node.value) is int and node.value >= minimum:
            return node.value
        if node is not None:
            got = repr(node.value) if isinstance(node, Scalar) else kind_of(node)
            self.error("DSL_WRONG_TYPE", f"{what} must be an integer >= {minimum}, got {got}",
                       node.pos)
        return None

    def number(self, node: Node | None, what: str) -> float | None:
        if (isinstance(node, Scalar) and isinstance(node.value, int | float)
                and not isinstance(node.value, bool) and 0 < node.value < math.inf):
            return float(node.value)
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be a finite number > 0", node.pos)
        return None

    def choice(self, node: Node | None, options: tuple[str, ...], what: str) -> str | None:
        value = self.string(node, what)
        if value is not None and value not in options:
            assert node is not None
            self.error("DSL_WRONG_TYPE", f"{what} must be one of {', '.join(options)}, got "
                       f"'{value}'", node.pos, _did_you_mean(value, set(options)))
            return None
        return value

    def fraction(self, node: Node | None, what: str) -> float | None:
        if (isinstance(node, Scalar) and isinstance(node.value, int | float)
                and not isinstance(node.value, bool) and 0 < node.value <= 1):
            return float(node.value)
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be a number in (0, 1], like 0.1",
                       node.pos)
        return None

    def boolean(self, node: Node | None, what: str) -> bool | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be true or false, got {kind_of(node)}",
                       node.pos)
        return None

    def name(self, node: Node | None, what: str) -> str | None:
        value = self.string(node, what)
        if value is not None and not NAME_RE.match(value):
            assert node is not None
            self.error("DSL_BAD_NAME", f"{what} is '{value}': names may only use letters, "
                       "digits, '.', '_' and '-', and start with a letter or digit", node.pos)
            return None
        return value

    def field_name(self, name: str, pos: Position, what: str) -> bool:
        if FIELD_RE.match(name):
            return True
        self.error("DSL_BAD_NAME", f"'{name}' is not a field name in {what}", pos,
                   "use letters, digits and '_', not starting with a digit")
        return False

    def field_list(self, node: Node, what: str) -> tuple[str, ...] | None:
        if not isinstance(node, Sequence) or not node.items:
            got = "an empty list" if isinstance(node, Sequence) else kind_of(node)
            self.error("DSL_WRONG_TYPE", f"{what} must be a non-empty list of field names, got "
                       f"{got}", node.pos)
            return None
        names: list[str] = []
        ok = True
        for item in node.items:
            name = self.string(item, f"a field name in {what}")
            if name is None or not self.field_name(name, item.pos, what):
                ok = False
            elif name in names:
                self.error("DSL_DUPLICATE_FIELD", f"field '{name}' is listed twice in {what}",
                           item.pos)
                ok = False
            else:
                names.append(name)
        return tuple(names) if ok else None

    def expr(self, node: Node, what: str) -> Expr | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool | int | float):
            node = Scalar(node.pos, str(node.value), node.text_col, False)  # `filter: true`
        text = self.string(node, what)
        if text is None:
            return None
        assert isinstance(node, Scalar)
        start = Position(node.pos.path, node.pos.line, node.text_col)
        expr, problems = parse_expr(text, start, node.verbatim)
        for problem in problems:
            self.error(problem.code, f"{problem.message} in {what}", problem.pos, problem.hint)
        return expr

    def schema(self, node: Node | None, what: str) -> AvroSchema | None:
        name = self.string(node, what)
        if name is None or node is None:
            return None
        try:
            return resolve_schema(name, node.pos.path)
        except ResolveError as exc:
            self.error(exc.code, f"{exc} ({what})", node.pos, exc.hint)
            return None

    def format_and_schema(self, spec: Mapping, what: str) -> tuple[str, AvroSchema | None] | None:
        fmt_node = spec.get("format")
        fmt = self.string(fmt_node, f"the format of {what}") if fmt_node else "json"
        if fmt is None:
            return None
        if fmt not in FORMATS:
            assert fmt_node is not None
            self.error("DSL_BAD_FORMAT", f"unknown format '{fmt}' in {what}", fmt_node.pos,
                       _did_you_mean(fmt, set(FORMATS)) or f"known: {', '.join(FORMATS)}")
            return None
        schema_node = spec.get("schema")
        if fmt == "avro" and schema_node is None:
            self.error("DSL_MISSING_KEY", f"{what} has format avro and needs the key 'schema'",
                       spec.pos)
            return None
        if fmt != "avro" and schema_node is not None:
            self.error("DSL_CONFLICT", f"{what} has format {fmt}, which uses no schema",
                       spec.key_pos("schema"), "set format: avro, or use a validate stage")
            return None
        schema = self.record_schema(schema_node, f"the schema of {what}") if schema_node \
            else None
        if schema_node is not None and schema is None:
            return None
        return fmt, schema

    def record_schema(self, node: Node | None, what: str) -> AvroSchema | None:
        """An Avro schema whose top level is a record, as records are what uee moves."""
        schema = self.schema(node, what)
        if schema is None or node is None:
            return None
        parsed = schema.parsed
        if not (isinstance(parsed, dict) and parsed.get("type") == "record"):
            self.error("DSL_BAD_SCHEMA", f"schema '{schema.path}' is not a record schema "
                       f"({what})", node.pos, "uee reads and writes records: use type record")
            return None
        return schema

    def single_kind(self, node: Node, kinds: set[str], what: str, code: str
                    ) -> tuple[str, Position, Node] | None:
        """A `{kind: body}` mapping with exactly one key naming its kind."""
        mapping = self.mapping(node, what)
        if mapping is None:
            return None
        if len(mapping.entries) != 1:
            self.error("DSL_WRONG_TYPE", f"{what} must have exactly one kind "
                       f"({', '.join(sorted(kinds))}), got {len(mapping.entries)} keys",
                       mapping.pos)
            return None
        kind, pos, body = mapping.entries[0]
        if kind not in kinds:
            hint = _did_you_mean(kind, kinds) or f"known: {', '.join(sorted(kinds))}"
            self.error(code, f"unknown kind '{kind}' in {what}", pos, hint)
            return None
        return kind, pos, body

    # -- the pipeline ----------------------------------------------------------------------

    def pipeline(self, node: Node) -> Pipeline | None:
        mapping = self.mapping(node, "a pipeline")
        if mapping is None:
            return None
        name_node = mapping.get("pipeline")
        name = self.name(name_node, "the pipeline name") if name_node else None
        if name is not None:
            self.names.append((name, mapping.pos))
        raw = name_node.value if isinstance(name_node, Scalar) else None
        what = f"pipeline '{name or raw}'" if (name or raw) else "a pipeline"
        self.keys(mapping, PIPELINE_KEYS, {"pipeline", "source"}, what)
        if mapping.get("description") is not None:
            self.string(mapping.get("description"), f"the description of {what}")
        get = mapping.get
        source_node = get("source")
        source = self.source(source_node, what) if source_node is not None else None
        sinks = self.sinks(mapping, what)
        stages_node = get("stages")
        if isinstance(stages_node, Scalar) and stages_node.value is None:
            stages_node = None  # `stages:` with nothing under it: no stages
        staged = self.stages(stages_node, name or "?", what) if stages_node else ((), None)
        share = self.boolean(get("share"), f"'share' of {what}") if get("share") else True
        on_error = self.choice(get("on_error"), ON_ERROR, f"'on_error' of {what}") \
            if get("on_error") else "dlq"
        sections = self.sections(mapping, what)
        # Checks across sections run on whatever parts are valid, so that one mistake does
        # not hide another.
        route = staged[1] if staged else None
        ok = route is None or sinks is None or self.route_targets(route, sinks, what)
        if source is not None and sinks is not None:
            dlq_topic: str | None = (sections[0].topic if sections else None) or \
                f"{name or raw}.dlq"
            if sections and not sections[0].enabled:
                dlq_topic = None
            ok &= self.topics_apart(source, sinks, dlq_topic, mapping, what)
        if not ok or None in (name, source, sinks, staged, share, sections, on_error) \
                or not staged or staged[0] is None:
            return None
        assert name and source and sinks is not None and staged[0] is not None and sections
        dlq, checkpoint, quota = sections
        return Pipeline(name, source, staged[0], route, sinks, mapping.pos, bool(share), dlq,
                        checkpoint, quota, str(on_error))

    def topics_apart(self, source: Source, sinks: tuple[KafkaSink, ...], dlq_topic: str | None,
                     mapping: Mapping, what: str) -> bool:
        """A pipeline must not feed itself, nor mix dead letters into its output."""
        ok = True
        dlq_pos = (mapping.get("dlq") or mapping).pos
        if isinstance(source, KafkaSource):
            for sink in sinks:
                if sink.topic == source.topic:
                    self.error("DSL_SINK_IS_SOURCE", f"{what} writes to its own source topic "
                               f"'{sink.topic}'; every record would be processed again, "
                               "forever", sink.pos, "write to a different topic")
                    ok = False
            if dlq_topic == source.topic:
                self.error("DSL_SINK_IS_SOURCE", f"the dead-letter topic of {what} is its own "
                           f"source topic '{dlq_topic}'; a failing record would fail forever",
                           dlq_pos, "use another dlq topic")
                ok = False
        for sink in sinks:
            if sink.topic == dlq_topic:
                self.error("DSL_CONFLICT", f"{what} writes records and dead letters to the same "
                           f"topic '{sink.topic}'", dlq_pos, "use another dlq topic")
                ok = False
        return ok

    def sections(self, mapping: Mapping, what: str
                 ) -> tuple[DlqSection, CheckpointSection, QuotaSection] | None:
        """The optional dlq, checkpoint and quota sections; their defaults when absent."""
        dlq_node = mapping.get("dlq")
        if isinstance(dlq_node, Scalar) and dlq_node.value == "none":
            dlq_node = None
            disabled = {"enabled": False}
            on_error = mapping.get("on_error")
            if not (isinstance(on_error, Scalar) and on_error.value == "fail"):
                self.error("DSL_DLQ_REQUIRED", f"{what} has `dlq: none`, so a failing record "
                           "would have nowhere to go", mapping.key_pos("dlq"),
                           "keep a dlq, or add `on_error: fail` to stop the pipeline on the "
                           "first failing record instead")
                return None
        else:
            disabled = {}
        dlq = self.options(dlq_node, f"the dlq section of {what}", {
            "topic": lambda n: self.name(n, f"the dlq topic of {what}"),
            "max_retries": lambda n: self.integer(n, f"dlq 'max_retries' of {what}", 0),
            "backoff": lambda n: self.number(n, f"dlq 'backoff' (seconds) of {what}"),
            "max_replays": lambda n: self.integer(n, f"dlq 'max_replays' of {what}", 0),
            "pause_rate": lambda n: self.fraction(n, f"dlq 'pause_rate' of {what}"),
            "pause_window": lambda n: self.integer(n, f"dlq 'pause_window' of {what}", 1),
            "breaker_failures": lambda n: self.integer(n, f"dlq 'breaker_failures' of {what}", 1),
            "breaker_open": lambda n: self.number(n, f"dlq 'breaker_open' (seconds) of {what}"),
        })
        checkpoint = self.options(mapping.get("checkpoint"), f"the checkpoint section of {what}",
                                  {"interval": lambda n: self.number(
                                      n, f"checkpoint 'interval' of {what}"),
                                   "every": lambda n: self.integer(
                                       n, f"checkpoint 'every' (records) of {what}", 1)})
        quota = self.options(mapping.get("quota"), f"the quota section of {what}", {
            "permits": lambda n: self.integer(n, f"quota 'permits' of {what}", 1),
            "max_lag": lambda n: self.integer(n, f"quota 'max_lag' of {what}", 0),
            "max_p99_ms": lambda n: self.number(n, f"quota 'max_p99_ms' of {what}"),
            "max_saturation": lambda n: self.number(
                n, f"quota 'max_saturation' (percent busy) of {what}"),
            "priority": lambda n: self.integer(n, f"quota 'priority' of {what}", 0),
        })
        if dlq is None or checkpoint is None or quota is None:
            return None
        dlq.update(disabled)
        if "backoff" in dlq:
            dlq["backoff_s"] = dlq.pop("backoff")
        if "breaker_open" in dlq:
            dlq["breaker_open_s"] = dlq.pop("breaker_open")
        if "interval" in checkpoint:
            checkpoint["interval_s"] = checkpoint.pop("interval")
        return DlqSection(**dlq), CheckpointSection(**checkpoint), QuotaSection(**quota)

    def options(self, node: Node | None, what: str,
                checks: dict[str, Callable[[Node], Any]]) -> dict[str, Any] | None:
        """An optional mapping of optional keys, each checked; None if anything is wrong."""
        if node is None:
            return {}
        spec, keys_ok = self.section(node, set(checks), set(), what)
        if spec is None:
            return None
        values = {key: checks[key](value) for key, _, value in spec if key in checks}
        return None if not keys_ok or any(v is None for v in values.values()) else values

    # -- source ----------------------------------------------------------------------------

    def source(self, node: Node, what: str) -> Source | None:
        kinds = {"kafka", "connector", *SOURCE_CONNECTORS}
        found = self.single_kind(node, kinds, f"the source of {what}", "DSL_UNKNOWN_SOURCE")
        if found is None:
            return None
        kind, pos, body = found
        if kind == "kafka":
            return self.kafka_source(body, pos, f"the kafka source of {what}")
        if kind == "connector":
            return self.connector_source(body, pos, f"the connector source of {what}")
        spec = self.mapping(body, f"the {kind} source of {what}")
        return None if spec is None else self.connector_options(
            kind, spec, pos, f"the {kind} source of {what}")

    def kafka_source(self, body: Node, pos: Position, what: str) -> Source | None:
        spec, keys_ok = self.section(body, {"topic", "format", "schema", "group"}, {"topic"}, what)
        if spec is None:
            return None
        topic = self.name(spec.get("topic"), f"the topic of {what}")
        encoding = self.format_and_schema(spec, what)
        group_node = spec.get("group")
        group = self.name(group_node, f"the consumer group of {what}") if group_node else None
        if (not keys_ok or topic is None or encoding is None
                or (group_node is not None and group is None)):
            return None
        return KafkaSource(topic, encoding[0], encoding[1], group, pos)

    def connector_source(self, body: Node, pos: Position, what: str) -> Source | None:
        spec = self.mapping(body, what)
        if spec is None:
            return None
        type_name = self.string(spec.get("type"), f"the type of {what}") if spec.get("type") \
            else None
        if spec.get("type") is None:
            self.error("DSL_MISSING_KEY", f"{what} needs the key 'type'", spec.pos)
        if type_name is None:
            return None
        connector = SOURCE_CONNECTORS.get(type_name)
        if connector is None:
            known = ", ".join(sorted(SOURCE_CONNECTORS)) or "none installed yet"
            type_node = spec.get("type")
            assert type_node is not None
            self.error("DSL_UNKNOWN_CONNECTOR", f"no source connector of type '{type_name}' in "
                       f"{what}", type_node.pos,
                       _did_you_mean(type_name, set(SOURCE_CONNECTORS)) or f"known: {known}")
            return None
        return self.connector_options(type_name, spec, pos, what, extra={"type"})

    def connector_options(self, type_name: str, spec: Mapping, pos: Position, what: str,
                          extra: frozenset[str] | set[str] = frozenset()) -> Source | None:
        """A connector's options, checked against its schema (a pydantic model); each
        problem is reported at the option it is about."""
        connector = SOURCE_CONNECTORS[type_name]
        fields = connector.options.model_fields
        required = {name for name, info in fields.items() if info.is_required()}
        if not self.keys(spec, {*fields, *extra}, {*required, *extra}, what):
            return None
        values = {key: _data(value) for key, _, value in spec if key not in extra}
        try:
            config = connector.options.model_validate(values)
        except ValidationError as exc:
            for problem in exc.errors():
                node: Node = spec
                for step in problem["loc"]:  # as deep as the file goes: the nearest position
                    inner = node.get(str(step)) if isinstance(node, Mapping) else None
                    if inner is None:
                        break
                    node = inner
                key = ".".join(str(step) for step in problem["loc"])
                got = repr(node.value) if isinstance(node, Scalar) else kind_of(node)
                message = problem["msg"].replace("Input should be", "must be")
                message = message.removeprefix("Value error, ")
                self.error("DSL_WRONG_TYPE", f"'{key}' of {what} {message}, got {got}",
                           node.pos)
            return None
        options = _plain_value(config.model_dump())
        return ConnectorSource(type_name, options, config, connector.describe(config), pos)

    # -- stages ----------------------------------------------------------------------------

    def stages(self, node: Node, pipeline: str, what: str
               ) -> tuple[tuple[Stage, ...] | None, RouteStage | None] | None:
        if not isinstance(node, Sequence):
            self.error("DSL_WRONG_TYPE", f"'stages' of {what} must be a list, got {kind_of(node)}",
                       node.pos)
            return None
        built: list[Stage | RouteStage | None] = []
        for index, item in enumerate(node.items, start=1):
            label = f"stage {index} of {what}"
            found = self.single_kind(item, {*KINDS, "route"}, label, "DSL_UNKNOWN_STAGE")
            if found is None:
                built.append(None)
                continue
            kind, pos, body = found
            stage_id, stage_what = f"{pipeline}.{index}-{kind}", f"{label} ({kind})"
            stage = (self.route_stage(stage_id, pos, body, stage_what) if kind == "route"
                     else KINDS[kind].parse(self, stage_id, pos, body, stage_what))
            if isinstance(stage, RouteStage) and index != len(node.items):
                self.error("DSL_ROUTE_NOT_LAST", f"{label}: 'route' must be the last stage; it "
                           "chooses the sink each record goes to", pos)
                stage = None
            built.append(stage)
        last = built.pop() if built and isinstance(built[-1], RouteStage) else None
        route = last if isinstance(last, RouteStage) else None
        if any(stage is None for stage in built):
            return None, route  # the route is still checked against the sinks
        stages = tuple(s for s in built if not isinstance(s, RouteStage) and s is not None)
        return stages, route

    def cut_at_commas(self, spec: Mapping, what: str) -> set[int]:
        """Entries of a flow mapping (`{a: f(x, y)}`) that an unquoted comma cut in two: YAML
        ends the value at the comma and reads the rest as a key without a value. Reported once,
        as what happened, instead of as a bad field name and a broken expression."""
        cut: set[int] = set()
        entries = list(spec)
        for index in range(1, len(entries)):
            name, _, value = entries[index - 1]
            rest, _, rest_value = entries[index]
            if (index - 1 in cut or not isinstance(value, Scalar)
                    or not isinstance(value.value, str) or FIELD_RE.match(rest)
                    or not (isinstance(rest_value, Scalar) and rest_value.value is None)):
                continue
            text = value.value
            if text.count("(") + text.count("[") <= text.count(")") + text.count("]"):
                continue
            whole = f"{text}, {rest}"
            self.error("DSL_FLOW_COMMA", f"the expression of field '{name}' in {what} was cut "
                       f"at a comma: inside {{...}} an unquoted comma ends a value, so YAML read "
                       f"'{text}' and then '{rest}' as another field", value.pos,
                       f"quote the expression: {name}: \"{whole}\", or write the stage as a "
                       "block mapping, one field per line")
            cut.update((index - 1, index))
        return cut

    def route_stage(self, stage_id: str, pos: Position, body: Node, what: str
                    ) -> RouteStage | None:
        if not isinstance(body, Sequence) or not body.items:
            self.error("DSL_WRONG_TYPE", f"{what} must be a list of rules like "
                       "{when: <expr>, to: <sink>} ending with {otherwise: <sink>}", body.pos)
            return None
        rules: list[RouteRule] = []
        ok = True
        for number, item in enumerate(body.items, start=1):
            rule_what = f"rule {number} of {what}"
            spec = self.mapping(item, rule_what)
            if spec is None:
                ok = False
                continue
            if spec.get("otherwise") is not None:
                if not self.keys(spec, {"otherwise"}, {"otherwise"}, rule_what):
                    ok = False
                    continue
                if number != len(body.items):
                    self.error("DSL_ROUTE_ORDER", f"{rule_what}: 'otherwise' must be the last "
                               "rule", spec.pos)
                    ok = False
                target = self.string(spec.get("otherwise"), f"the sink of {rule_what}")
                rules.append(RouteRule(None, target or "?", spec.pos))
                ok &= target is not None
                continue
            if not self.keys(spec, {"when", "to"}, {"when", "to"}, rule_what):
                ok = False
                continue
            when_node = spec.get("when")
            assert when_node is not None
            when = self.expr(when_node, f"the condition of {rule_what}")
            target = self.string(spec.get("to"), f"the sink of {rule_what}")
            if when is None or target is None:
                ok = False
                continue
            rules.append(RouteRule(when, target, spec.pos))
        return RouteStage(stage_id, tuple(rules), pos) if ok else None

    def route_targets(self, route: RouteStage, sinks: tuple[KafkaSink, ...], what: str) -> bool:
        names = {sink.name for sink in sinks}
        ok = True
        for rule in route.rules:
            if rule.to not in names:
                hint = _did_you_mean(rule.to, names) or f"sinks: {', '.join(sorted(names))}"
                self.error("DSL_UNKNOWN_SINK_NAME", f"route of {what} sends to sink '{rule.to}', "
                           "which the pipeline does not define", rule.pos, hint)
                ok = False
        return ok

    # -- sinks -----------------------------------------------------------------------------

    def sinks(self, mapping: Mapping, what: str) -> tuple[KafkaSink, ...] | None:
        one, many = mapping.get("sink"), mapping.get("sinks")
        if one is not None and many is not None:
            self.error("DSL_CONFLICT", f"{what} has both 'sink' and 'sinks'",
                       mapping.key_pos("sinks"), "use 'sink' for one, 'sinks' for several")
            return None
        if one is None and many is None:
            self.error("DSL_MISSING_KEY", f"{what} needs the key 'sink' (or 'sinks')",
                       mapping.pos)
            return None
        if one is not None:
            sink = self.sink("default", one, what)
            return (sink,) if sink else None
        assert many is not None
        spec = self.mapping(many, f"'sinks' of {what}")
        if spec is None:
            return None
        if not spec.entries:
            self.error("DSL_WRONG_TYPE", f"'sinks' of {what} must name at least one sink",
                       spec.pos)
            return None
        built: list[KafkaSink | None] = []
        for name, key_pos, body in spec:
            if not FIELD_RE.match(name):
                self.error("DSL_BAD_NAME", f"sink name '{name}' in {what} must be an identifier",
                           key_pos)
                built.append(None)
                continue
            built.append(self.sink(name, body, what))
        if any(s is None for s in built):
            return None
        return tuple(s for s in built if s is not None)

    def sink(self, name: str, node: Node, pipeline_what: str) -> KafkaSink | None:
        named = "" if name == "default" else f" '{name}'"
        found = self.single_kind(node, SINK_KINDS, f"the sink{named} of {pipeline_what}",
                                 "DSL_UNKNOWN_SINK")
        if found is None:
            return None
        _, pos, body = found
        what = f"the kafka sink{named} of {pipeline_what}"
        spec, keys_ok = self.section(body, {"topic", "format", "schema", "key"}, {"topic"}, what)
        if spec is None:
            return None
        topic = self.name(spec.get("topic"), f"the topic of {what}")
        encoding = self.format_and_schema(spec, what)
        key_node = spec.get("key")
        key = self.expr(key_node, f"the key of {what}") if key_node else None
        if (not keys_ok or topic is None or encoding is None
                or (key_node is not None and key is None)):
            return None
        return KafkaSink(name, topic, encoding[0], encoding[1], key, pos)


def _data(node: Node) -> Any:
    """A node's value as plain data (dicts and lists), for an options model to validate."""
    if isinstance(node, Scalar):
        return node.value
    if isinstance(node, Sequence):
        return [_data(item) for item in node.items]
    assert isinstance(node, Mapping)
    return {k: _data(v) for k, _, v in node}


def _plain_value(value: Any) -> Any:
    """Validated options as a hashable value (sources are compared when plans merge)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _plain_value(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_plain_value(v) for v in value)
    return value


# -- checks across pipelines -----------------------------------------------------------------


def check_across(names: list[tuple[str, Position]], pipelines: list[Pipeline]
                 ) -> list[Diagnostic]:
    """Duplicate names, and cycles through topics (A's sink feeds B whose sink feeds A)."""
    problems: list[Diagnostic] = []
    first_at: dict[str, Position] = {}
    for name, pos in names:
        first = first_at.setdefault(name, pos)
        if first != pos:
            problems.append(Diagnostic(
                "DSL_DUPLICATE_PIPELINE", f"pipeline '{name}' is already defined at {first}",
                pos, "pipeline names must be unique"))
    unique = {p.name: p for p in reversed(pipelines)}
    problems.extend(_cycles(list(unique.values())))
    return problems


def _cycles(pipelines: list[Pipeline]) -> list[Diagnostic]:
    readers: dict[str, list[Pipeline]] = {}
    for pipeline in pipelines:
        if isinstance(pipeline.source, KafkaSource):
            readers.setdefault(pipeline.source.topic, []).append(pipeline)
    reported: set[frozenset[str]] = set()
    problems = []
    for start in sorted(pipelines, key=lambda p: p.name):
        if not isinstance(start.source, KafkaSource):
            continue
        path = _path_back(start, start.source.topic, readers, [start], set())
        if path is None or len(path) < 2:  # a pipeline alone is DSL_SINK_IS_SOURCE
            continue
        members = frozenset(p.name for p in path)
        if members in reported:
            continue
        reported.add(members)
        chain = " -> ".join(p.name for p in [*path, path[0]])
        problems.append(Diagnostic(
            "DSL_CYCLE", f"pipelines form a cycle through their topics: {chain}", start.pos,
            "every record would circulate forever; break the cycle with a different topic"))
    return problems


def _outputs(pipeline: Pipeline) -> list[str]:
    """Every topic a pipeline writes: its sinks and its dead-letter topic."""
    dlq = [pipeline.dlq_topic] if pipeline.dlq_topic else []
    return [*(sink.topic for sink in pipeline.sinks), *dlq]


def _path_back(current: Pipeline, target: str, readers: dict[str, list[Pipeline]],
               path: list[Pipeline], visited: set[str]) -> list[Pipeline] | None:
    """Depth-first: a chain of pipelines from `current`'s sinks back to topic `target`."""
    for topic in _outputs(current):
        if topic == target:
            return path
        if topic in visited:
            continue
        visited.add(topic)
        for reader in readers.get(topic, []):
            found = _path_back(reader, target, readers, [*path, reader], visited)
            if found is not None:
                return found
    return None


def validate_documents(documents: list[Node]) -> tuple[list[Pipeline], list[Diagnostic]]:
    """Validate every pipeline in the given documents (one pipeline, or a list of them, each)."""
    validator = Validator()
    pipelines: list[Pipeline] = []
    for document in documents:
        nodes = document.items if isinstance(document, Sequence) else (document,)
        for node in nodes:
            pipeline = validator.pipeline(node)
            if pipeline is not None:
                pipelines.append(pipeline)
    return pipelines, [*validator.diagnostics, *check_across(validator.names, pipelines)]
