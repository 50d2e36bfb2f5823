"""Check loaded pipeline documents and build the IR, collecting every diagnostic.

Each check reports a stable code (see README, "Error codes"), the file position,
the pipeline and stage it concerns, and a hint when one helps.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from dsl.errors import Diagnostic, Position
from dsl.expr import Expr, parse_expr
from dsl.ir import (
    FilterStage,
    GeneratorSource,
    KafkaSink,
    KafkaSource,
    MapStage,
    Pipeline,
    Source,
    Stage,
)
from dsl.loader import Mapping, Node, Scalar, Sequence, kind_of

# Names become topic, group and metric names, so they keep to Kafka's legal characters.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PIPELINE_KEYS = {"pipeline", "source", "stages", "sink"}
SOURCE_KINDS = {"kafka", "generator"}
STAGE_KINDS = {"filter", "map"}
SINK_KINDS = {"kafka"}


def _did_you_mean(word: str, options: set[str]) -> str | None:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class _Validator:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, pos: Position, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, pos, hint))

    # -- generic shape checks --------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> Mapping | None:
        if isinstance(node, Mapping):
            return node
        self.error("DSL_WRONG_TYPE", f"{what} must be a mapping, got {kind_of(node)}", node.pos)
        return None

    def keys(
        self, node: Mapping, allowed: set[str], required: set[str], what: str
    ) -> bool:
        ok = True
        for key, pos, _ in node:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f"allowed: {', '.join(sorted(allowed))}"
                self.error("DSL_UNKNOWN_KEY", f"unknown key '{key}' in {what}", pos, hint)
                ok = False
        for key in sorted(required - set(node.keys())):
            self.error("DSL_MISSING_KEY", f"{what} needs the key '{key}'", node.pos)
            ok = False
        return ok

    def string(self, node: Node | None, what: str) -> str | None:
        if isinstance(node, Scalar) and isinstance(node.value, str) and node.value.strip():
            return node.value
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be a non-empty string, got {kind_of(node)}",
                       node.pos)
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
                and not isinstance(node.value, bool) and node.value > 0):
            return float(node.value)
        if node is not None:
            self.error("DSL_WRONG_TYPE", f"{what} must be a number > 0", node.pos)
        return None

    def name(self, node: Node | None, what: str) -> str | None:
        value = self.string(node, what)
        if value is not None and not NAME_RE.match(value):
            assert node is not None
            self.error("DSL_BAD_NAME", f"{what} '{value}' may only use letters, digits, '.', "
                       "'_' and '-', and must start with a letter or digit", node.pos)
            return None
        return value

    def expr(self, node: Node, what: str) -> Expr | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool | int | float):
            node = Scalar(node.pos, str(node.value), node.text_col)  # `filter: true` is fine
        text = self.string(node, what)
        if text is None:
            return None
        assert isinstance(node, Scalar)
        start = Position(node.pos.path, node.pos.line, node.text_col)
        expr, problems = parse_expr(text, start)
        for problem in problems:
            self.error(problem.code, f"{problem.message} in {what}", problem.pos, problem.hint)
        return expr

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

    # -- pipeline sections ---------------------------------------------------------------

    def pipeline(self, node: Node) -> Pipeline | None:
        mapping = self.mapping(node, "a pipeline")
        if mapping is None:
            return None
        name_node = mapping.get("pipeline")
        name = self.name(name_node, "the pipeline name") if name_node else None
        what = f"pipeline '{name}'" if name else "a pipeline"
        self.keys(mapping, PIPELINE_KEYS, {"pipeline", "source", "sink"}, what)
        source_node, stages_node, sink_node = (mapping.get(k) for k in ("source", "stages", "sink"))
        source = self.source(source_node, what) if source_node else None
        stages = self.stages(stages_node, name or "?", what) if stages_node else ()
        sink = self.sink(sink_node, what) if sink_node else None
        if name is None or source is None or stages is None or sink is None:
            return None
        if isinstance(source, KafkaSource) and source.topic == sink.topic:
            self.error("DSL_SINK_IS_SOURCE", f"{what} writes to its own source topic "
                       f"'{sink.topic}'; every record would be processed again, forever",
                       sink.pos, "write to a different topic")
            return None
        return Pipeline(name, source, stages, (sink,), mapping.pos)

    def source(self, node: Node, what: str) -> Source | None:
        found = self.single_kind(node, SOURCE_KINDS, f"the source of {what}", "DSL_UNKNOWN_SOURCE")
        if found is None:
            return None
        kind, pos, body = found
        spec = self.mapping(body, f"the {kind} source of {what}")
        if spec is None:
            return None
        if kind == "kafka":
            if not self.keys(spec, {"topic"}, {"topic"}, f"the kafka source of {what}"):
                return None
            topic = self.name(spec.get("topic"), "the source topic")
            return KafkaSource(topic, pos) if topic else None
        context = f"the generator source of {what}"
        if not self.keys(spec, {"count", "rate", "seed"}, {"count"}, context):
            return None
        count = self.integer(spec.get("count"), "generator 'count'", 0)
        rate_node, seed_node = spec.get("rate"), spec.get("seed")
        rate = self.number(rate_node, "generator 'rate'") if rate_node else None
        seed = self.integer(seed_node, "generator 'seed'", 0) if seed_node else 0
        if count is None or seed is None or (rate_node is not None and rate is None):
            return None
        return GeneratorSource(count, rate, seed, pos)

    def stages(self, node: Node, pipeline: str, what: str) -> tuple[Stage, ...] | None:
        if not isinstance(node, Sequence):
            self.error("DSL_WRONG_TYPE", f"'stages' of {what} must be a list, got {kind_of(node)}",
                       node.pos)
            return None
        built: list[Stage | None] = []
        for index, item in enumerate(node.items, start=1):
            label = f"stage {index} of {what}"
            found = self.single_kind(item, STAGE_KINDS, label, "DSL_UNKNOWN_STAGE")
            if found is None:
                built.append(None)
                continue
            kind, pos, body = found
            stage_id = f"{pipeline}.{index}-{kind}"
            builder: Callable[[str, Position, Node, str], Stage | None]
            builder = self.filter_stage if kind == "filter" else self.map_stage
            built.append(builder(stage_id, pos, body, f"{label} ({kind})"))
        if any(stage is None for stage in built):
            return None
        return tuple(stage for stage in built if stage is not None)

    def filter_stage(self, stage_id: str, pos: Position, body: Node, what: str) -> Stage | None:
        predicate = self.expr(body, what)
        return FilterStage(stage_id, predicate, pos) if predicate else None

    def map_stage(self, stage_id: str, pos: Position, body: Node, what: str) -> Stage | None:
        spec = self.mapping(body, what)
        if spec is None:
            return None
        if not spec.entries:
            self.error("DSL_WRONG_TYPE", f"{what} must set at least one field", spec.pos)
            return None
        assignments: list[tuple[str, Expr]] = []
        ok = True
        for field_name, key_pos, value in spec:
            if not FIELD_RE.match(field_name):
                self.error("DSL_BAD_NAME", f"'{field_name}' is not a field name in {what}", key_pos,
                           "use letters, digits and '_', not starting with a digit")
                ok = False
                continue
            expr = self.expr(value, f"field '{field_name}' of {what}")
            if expr is None:
                ok = False
            else:
                assignments.append((field_name, expr))
        return MapStage(stage_id, tuple(assignments), pos) if ok else None

    def sink(self, node: Node, what: str) -> KafkaSink | None:
        found = self.single_kind(node, SINK_KINDS, f"the sink of {what}", "DSL_UNKNOWN_SINK")
        if found is None:
            return None
        _, pos, body = found
        spec = self.mapping(body, f"the kafka sink of {what}")
        if spec is None or not self.keys(spec, {"topic"}, {"topic"}, f"the kafka sink of {what}"):
            return None
        topic = self.name(spec.get("topic"), "the sink topic")
        return KafkaSink("default", topic, pos) if topic else None


def validate_documents(documents: list[Node]) -> tuple[list[Pipeline], list[Diagnostic]]:
    """Validate every pipeline in the given documents (one pipeline, or a list of them, each)."""
    validator = _Validator()
    pipelines: list[Pipeline] = []
    for document in documents:
        nodes = document.items if isinstance(document, Sequence) else (document,)
        for node in nodes:
            pipeline = validator.pipeline(node)
            if pipeline is not None:
                pipelines.append(pipeline)
    seen: dict[str, Pipeline] = {}
    for pipeline in pipelines:
        first = seen.setdefault(pipeline.name, pipeline)
        if first is not pipeline:
            validator.error("DSL_DUPLICATE_PIPELINE",
                            f"pipeline '{pipeline.name}' is already defined at {first.pos}",
                            pipeline.pos, "pipeline names must be unique")
    return pipelines, validator.diagnostics
