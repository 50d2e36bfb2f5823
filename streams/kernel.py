"""Compile a plan segment (a source and its tree of stages) into one batch function.

Per-record work is what limits a Python stream processor, so a segment becomes
generated Python: one loop over the batch that decodes each record, runs chains of
stages inline, fans out to the branches of the tree (each branch gets its own copy
of the record) and encodes for every sink. Field reads are dict lookups
(`r["amount"]`), helpers are bound closures, and a failing record is caught,
labelled with its stage and the pipelines it belongs to, and kept as data for the
dead-letter topics; it never stops the batch.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastavro
import fastavro.validation
import msgspec

from uee.connectors.base import OutRecord
from uee.dsl.expr import Expr
from uee.dsl.functions import FUNCTIONS, callables
from uee.dsl.ir import AvroSchema, KafkaSink
from uee.dsl.plan import Endpoint, PlanNode, Segment
from uee.dsl.stages import CHANGED_FIELD

_RECORD = "r"


class RecordError(Exception):
    """A record-level failure with its own stable code (decode, encode, transform result)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Slot:
    """A place where a record can fail or be dropped, and the pipelines it counts for, each
    with its own id for the stage (a shared stage has one per pipeline)."""

    stage_ids: tuple[tuple[str, str], ...]  # (pipeline, stage id)
    kind: str  # decode, a stage kind, "route" or "sink"

    @property
    def pipelines(self) -> tuple[str, ...]:
        return tuple(pipeline for pipeline, _ in self.stage_ids)

    def stage_for(self, pipeline: str) -> str:
        return next(stage for name, stage in self.stage_ids if name == pipeline)


@dataclass(frozen=True)
class SinkBinding:
    pipeline: str
    sink: KafkaSink


@dataclass(frozen=True)
class Failure:
    """One record that could not go through a slot: where, what, why, and for whom."""

    index: int
    slot: Slot
    code: str
    error: BaseException

    @property
    def message(self) -> str:
        if isinstance(self.error, KeyError):
            return f"field {self.error.args[0]!r} is missing"
        return str(self.error) or type(self.error).__name__


@dataclass(frozen=True)
class KernelResult:
    outputs: list[list[OutRecord]]  # per binding: (source index, key, value)
    failures: list[Failure]
    drops: list[int]  # per slot
    delivered: dict[str, int]  # records that reached each pipeline's sinks
    seconds: list[float] | None = None  # per slot, when the batch ran timed


# What a rejected record is replaced with. Rejects come from connector sources, whose
# records are JSON: no JSON decoder takes a NUL byte.
_UNDECODABLE = b"\x00"

# -- runtime helpers the generated code calls -----------------------------------------------


# JSON on the hot path is msgspec (C): it decodes and encodes integers of any size exactly,
# like the standard library, which stays as the reference: it explains every failure in the
# words uee always used, and decides whatever msgspec refuses or would write differently.
_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_json_loads = json.loads
fast_json_decode = msgspec.json.Decoder().decode
fast_json_encode = msgspec.json.Encoder().encode


TOMBSTONE = "the value is null (a tombstone); there is no record to transform"


def decode_json(value: bytes | None) -> dict[str, Any]:
    """The exact decoder, for what the fast path refused: a tombstone, a value that is not an
    object, invalid JSON (the standard library's message), or JSON that msgspec does not read
    (a byte order mark, a lone surrogate escape), which is kept. NaN and Infinity are not
    JSON: a record holding them is refused here instead of failing later at a sink."""
    if value is None:
        raise RecordError("DECODE_JSON", TOMBSTONE)
    try:
        record = fast_json_decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        record = _json_loads(value)  # raises JSONDecodeError for invalid JSON
        if not json_plain(record):
            raise RecordError("DECODE_JSON", "NaN, Infinity and numbers beyond the float range "
                              "are not JSON numbers") from None
    if record.__class__ is not dict:
        raise RecordError("DECODE_JSON", "the value is JSON but not an object")
    return record  # type: ignore[no-any-return]


def json_plain(value: Any) -> bool:
    """True when the value holds only what JSON can say (objects with string keys, arrays,
    strings, integers, finite floats, booleans, null): then msgspec writes exactly the bytes
    the reference encoder would, but for the exponent of floats (1e16 rather than 1e+16)."""
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return True
    if cls is float:
        return bool(value - value == 0.0)  # False for inf and nan
    if cls is dict:
        return all(k.__class__ is str and json_plain(v) for k, v in value.items())
    if cls is list or cls is tuple:
        return all(json_plain(item) for item in value)
    return False


def decode_raw(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RecordError("DECODE_RAW", TOMBSTONE)
    return {"value": value.decode("utf-8")}


def avro_decoder(schema: AvroSchema) -> Callable[[bytes | None], dict[str, Any]]:
    parsed = schema.parsed

    def decode(value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise RecordError("DECODE_AVRO", TOMBSTONE)
        record = fastavro.schemaless_reader(io.BytesIO(value), parsed, None)
        if not isinstance(record, dict):
            raise RecordError("DECODE_AVRO", "the Avro value is not a record")
        return record

    return decode


def encode_json(record: dict[str, Any]) -> bytes:
    """The reference encoder: what a record that is not plain JSON is written with (or why
    it cannot be)."""
    try:
        return _json_encode(record).encode()  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise RecordError("ENCODE_JSON", f"cannot write the record as JSON: {exc}") from exc


def encode_raw(record: dict[str, Any]) -> bytes:
    if "value" not in record:
        raise RecordError("ENCODE_RAW", "format raw writes the field 'value', which is missing")
    value = record["value"]
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else _json_encode(value)).encode()  # type: ignore[no-any-return]


def avro_encoder(schema: AvroSchema) -> Callable[[dict[str, Any]], bytes]:
    parsed = schema.parsed

    def encode(record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        try:
            fastavro.schemaless_writer(buffer, parsed, record)
        except Exception as exc:  # fastavro raises ValueError, TypeError, KeyError...
            raise RecordError("ENCODE_AVRO", f"the record does not fit the Avro schema "
                              f"{schema.path}: {exc}") from exc
        return buffer.getvalue()

    return encode


def avro_validator(schema: AvroSchema) -> Callable[[dict[str, Any]], None]:
    parsed = schema.parsed

    def validate(record: dict[str, Any]) -> None:
        try:
            fastavro.validation.validate(record, parsed, raise_errors=True)
        except fastavro.validation.ValidationError as exc:
            raise RecordError("VALIDATION_SCHEMA", f"the record does not match {schema.path}: "
                              f"{exc}") from exc

    return validate


def encode_key(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else _json_encode(value)).encode()  # type: ignore[no-any-return]


def python_results(result: Any) -> list[dict[str, Any]]:
    """A user function's result as a list of records: None drops, a list fans out."""
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    if isinstance(result, list) and all(isinstance(item, dict) for item in result):
        return result
    raise RecordError("TRANSFORM_RESULT", "a python stage must return a record (dict), None, "
                      f"or a list of records, not {type(result).__name__}")


def explode_items(record: dict[str, Any], items: Any, path: tuple[str, ...] | None
                  ) -> list[dict[str, Any]]:
    """One record per element; a field path is replaced by the element (copying the objects
    along the path, so siblings never share what they change)."""
    if not isinstance(items, list):
        raise TypeError(f"explode needs a list, got {type(items).__name__}")
    out = []
    for item in items:
        if path is None:
            if not isinstance(item, dict):
                raise TypeError("explode of an expression needs a list of objects; explode a "
                                "field (like items) to replace it by each element")
            out.append({**record, **item})
            continue
        copy_root = dict(record)
        target = copy_root
        for name in path[:-1]:
            target[name] = dict(target[name])
            target = target[name]
        target[path[-1]] = item
        out.append(copy_root)
    return out


class DiffState:
    """A short hash of each watched field of the last record, per key. The kernel reads and
    writes it here, on the agent's thread, at record speed; what changed since the last
    checkpoint is `drain`ed into the `diffs` table (RocksDB, changelogged) by that
    checkpoint, before the offsets it covers are committed, and `load`ed back from the
    table when the worker starts. Hashes, not values: a key costs tens of bytes whatever
    its records hold."""

    def __init__(self, fields: tuple[str, ...] | None, name: str = "diff") -> None:
        self.fields = fields
        self.name = name
        self.last: dict[str, dict[str, str]] = {}
        self.dirty: set[str] = set()

    def changes(self, key: Any, record: dict[str, Any]) -> list[str] | None:
        names = self.fields or tuple(k for k in record if k != CHANGED_FIELD)
        now = {name: _field_hash(record[name]) for name in names if name in record}
        key = _json_encode(key)  # 1 and "1" are two keys
        before = self.last.get(key)
        if before == now:
            return None
        self.last[key] = now
        self.dirty.add(key)
        if before is None:
            return sorted(now)
        return sorted(n for n in set(now) | set(before) if now.get(n) != before.get(n))

    def drain(self) -> dict[str, dict[str, str]]:
        """The rows changed since the last drain."""
        rows = {key: self.last[key] for key in self.dirty}
        self.dirty = set()
        return rows

    def load(self, rows: dict[str, dict[str, str]]) -> None:
        self.last.update(rows)


def _field_hash(value: Any) -> str:
    return hashlib.blake2b(_json_encode(value).encode(), digest_size=8).hexdigest()


# -- code generation ------------------------------------------------------------------------


class _ToRecordLookups(ast.NodeTransformer):
    """Rewrite a checked expression so fields read from the record and calls hit our table."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return _lookup(ast.Name(_RECORD, ast.Load()), node.id)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        return _lookup(self.visit(node.value), node.attr)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        args = [self.visit(arg) for arg in node.args]
        if isinstance(func, ast.Attribute):  # field.lower() -> lower(field)
            name, args = func.attr, [self.visit(func.value), *args]
        else:
            assert isinstance(func, ast.Name)
            name = func.id
        if FUNCTIONS[name].lazy:
            args = [ast.Lambda(_no_args(), arg) for arg in args]
        return ast.Call(ast.Name(f"_fn_{name}", ast.Load()), args, [])


def _lookup(container: ast.expr, key: str) -> ast.Subscript:
    return ast.Subscript(container, ast.Constant(key), ast.Load())


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


def python_source(expr: Expr) -> str:
    """The expression as Python over the record variable, e.g. `r['amount'] * 100`."""
    tree = _ToRecordLookups().visit(ast.parse(expr.normalized, mode="eval").body)
    return ast.unparse(ast.fix_missing_locations(tree))


def error_code(slot: Slot, error: BaseException, decode_code: str) -> str:
    if isinstance(error, RecordError):
        return error.code
    if slot.kind == "decode":
        return decode_code
    if slot.kind == "python":
        return "TRANSFORM_EXCEPTION"
    if isinstance(error, KeyError | IndexError):
        return "EXPR_MISSING_FIELD"
    if isinstance(error, TypeError | AttributeError):
        return "EXPR_TYPE"
    if isinstance(error, ZeroDivisionError | OverflowError):
        return "EXPR_ARITHMETIC"
    if slot.kind == "sink":
        return "UNKNOWN_ERROR"
    if isinstance(error, ValueError):
        return "EXPR_VALUE"
    return "EXPR_ERROR"


class _Writer:
    """Collects lines of generated code with indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _changes_nested(node: PlanNode) -> bool:
    return any(n.stage.changes_nested for n in node.walk())


# What stages may ask of the runtime by name (uee.dsl.stages.base.CodeContext.runtime).
RUNTIME: dict[str, Any] = {
    "avro_validator": avro_validator,
    "diff_state": DiffState,
    "python_results": python_results,
    "explode_items": explode_items,
}


def _is_fan_in_one(node: PlanNode) -> bool:
    """True when the node hands its record to exactly one child and nothing else."""
    return len(node.children) == 1 and not node.endpoints


@dataclass
class _Compiler:
    segment: Segment
    decode: Callable[[bytes | None], dict[str, Any]]
    fast_decode: Callable[[bytes], Any] | None  # may refuse what `decode` explains or accepts
    source_plain: bool  # decoded records hold only plain JSON values
    namespace: dict[str, Any] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    bindings: list[SinkBinding] = field(default_factory=list)
    code: _Writer = field(default_factory=_Writer)
    functions: int = 0
    state_name: str | None = None  # the table of the stage being compiled, if it keeps state
    # The variant that also times each slot (sampled batches: `uee_stage_latency_seconds`);
    # its per-record clock reads would cost the fast path several percent. Its names
    # (`_clock`, `_times`, `_stage_t`) must not be a stage's: a rename stage uses `_t`.
    timed: bool = False

    def bind(self, value: Any, prefix: str) -> str:
        name = f"_{prefix}{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def expr(self, expr: Expr) -> str:
        return python_source(expr)

    def runtime(self, name: str) -> Any:
        return RUNTIME[name]

    def slot(self, stage_ids: tuple[tuple[str, str], ...], kind: str) -> int:
        self.slots.append(Slot(stage_ids, kind))
        return len(self.slots) - 1

    def compile(self) -> str:
        segment = self.segment
        self.slot(tuple((p, f"{p}.decode") for p in segment.pipelines), "decode")
        pipelines = list(segment.pipelines)
        body = _Writer()
        self.code = body
        functions = self.dispatch_functions(segment.endpoints, segment.roots,
                                            plain=self.source_plain)
        out = _Writer()
        out.add(0, "def _kernel(values, keys):")
        for index in range(len(self.bindings)):
            out.add(1, f"_out{index} = []")
        out.add(1, "_fails = []")
        out.add(1, "_fail = _fails.append")
        out.add(1, f"_drops = [0] * {len(self.slots)}")
        out.add(1, f"_emitted = [0] * {len(pipelines)}")
        if self.timed:
            out.add(1, f"_times = [0.0] * {len(self.slots)}")
            self.namespace["_clock"] = time.perf_counter
        out.lines.extend("    " + line for line in body.lines)
        out.add(1, "for i, v in enumerate(values):")
        decode_at = 2
        if self.fast_decode is not None:
            # The fast decoder takes nearly every record; the exact one decides the rest.
            out.add(2, "try:")
            out.add(3, "r = _fast_decode(v)")
            out.add(2, "except Exception:")
            out.add(3, "r = None")
            out.add(2, "if r.__class__ is not dict:")
            decode_at = 3
            self.namespace["_fast_decode"] = self.fast_decode
        out.add(decode_at, "try:")
        out.add(decode_at + 1, "r = _decode(v)")
        out.add(decode_at, "except Exception as exc:")
        out.add(decode_at + 1, "_fail((i, 0, exc))")
        out.add(decode_at + 1, "continue")
        if self.timed:  # decoding: from the loop's start (the fast decoder's try) to here
            out.lines.insert(out.lines.index("    for i, v in enumerate(values):") + 1,
                             "        _stage_t = _clock()")
            out.add(2, "_times[0] += _clock() - _stage_t")
        for call in functions:
            out.add(2, call)
        outputs = ", ".join(f"_out{i}" for i in range(len(self.bindings)))
        times = ", _times" if self.timed else ""
        out.add(1, f"return [{outputs}], _fails, _drops, _emitted{times}")
        self.namespace["_decode"] = self.decode
        self.namespace["_pipeline_index"] = {p: i for i, p in enumerate(pipelines)}
        return "\n".join(out.lines) + "\n"

    def dispatch_functions(self, endpoints: tuple[Endpoint, ...],
                           children: tuple[PlanNode, ...], plain: bool) -> list[str]:
        """Define the functions for these consumers; return the calls that feed them `r`:
        endpoints first (they only read), then children, all but the last on a copy. `plain`:
        the records arriving here can only hold plain JSON values."""
        calls = [f"{self.endpoint_function(e, plain)}(r, i)" for e in endpoints]
        # Stages change only top-level fields, so a shallow copy per branch isolates them
        # and the last branch can take the record itself. A python stage may change nested
        # objects too, which other branches, or other elements of an explode, still share:
        # a branch with one always gets a deep copy.
        self.namespace["_deepcopy"] = copy.deepcopy
        for position, child in enumerate(children):
            name = self.node_function(child, plain)
            if _changes_nested(child):
                calls.append(f"{name}(_deepcopy(r), i)")
            elif position == len(children) - 1:
                calls.append(f"{name}(r, i)")
            else:
                calls.append(f"{name}(dict(r), i)")
        return calls

    def node_function(self, node: PlanNode, plain: bool) -> str:
        """A function running this node's stage and every single-successor stage after it."""
        self.functions += 1
        name = f"_node{self.functions}"
        lines = _Writer()
        current = node
        flat_items: str | None = None
        slot_lines: list[tuple[int, list[str]]] = []
        while True:
            slot = self.slot(current.stage_ids, current.stage.kind)
            self.state_name = current.table
            compiled = current.stage.compile(self)
            flat_items = compiled.items
            plain = plain and not current.stage.may_leave_json()
            slot_lines.append((slot, compiled.lines))
            if flat_items is not None or not _is_fan_in_one(current):
                break
            current = current.children[0]
        calls = self.dispatch_functions(current.endpoints, current.children, plain)
        lines.add(0, f"def {name}(r, i):")
        lines.add(1, "try:")
        for slot, stage_lines in slot_lines:
            lines.add(2, f"s = {slot}")
            self.timed_lines(lines, 2, slot, stage_lines)
        lines.add(1, "except Exception as exc:")
        lines.add(2, "_fail((i, s, exc))")
        lines.add(2, "return")
        if flat_items is not None:
            lines.add(1, f"if not {flat_items}:")
            lines.add(2, "_drops[s] += 1")
            lines.add(1, f"for r in {flat_items}:")
            for call in calls:
                lines.add(2, call)
        else:
            for call in calls:
                lines.add(1, call)
        self.code.lines.extend(lines.lines)
        return name

    def endpoint_function(self, endpoint: Endpoint, plain: bool) -> str:
        pipeline_index = list(self.segment.pipelines).index(endpoint.pipeline)
        route = endpoint.route
        stage_id = route.id if route else f"{endpoint.pipeline}.sink"
        slot = self.slot(((endpoint.pipeline, stage_id),), "route" if route else "sink")
        name = f"_e{slot}"
        lines = _Writer()
        lines.add(0, f"def {name}(r, i):")
        lines.add(1, f"s = {slot}")
        if self.timed:
            lines.add(1, "_stage_t = _clock()")
        lines.add(1, "try:")
        sinks = {sink.name: sink for sink in endpoint.sinks}
        if route is None:
            self.emit(lines, 2, endpoint, list(endpoint.sinks), plain)
        else:
            for number, rule in enumerate(route.rules):
                if rule.when is None:
                    lines.add(2, "else:" if number else "if True:")
                else:
                    keyword = "if" if number == 0 else "elif"
                    lines.add(2, f"{keyword} {python_source(rule.when)}:")
                self.emit(lines, 3, endpoint, [sinks[rule.to]], plain)
            if route.rules[-1].when is not None:  # no `otherwise`: unmatched records stop here
                lines.add(2, "else:")
                lines.add(3, "_drops[s] += 1")
                lines.add(3, "return")
        lines.add(2, f"_emitted[{pipeline_index}] += 1")
        lines.add(1, "except Exception as exc:")
        lines.add(2, "_fail((i, s, exc))")
        if self.timed:
            lines.add(1, "finally:")
            lines.add(2, f"_times[{slot}] += _clock() - _stage_t")
        self.code.lines.extend(lines.lines)
        return name

    def timed_lines(self, lines: _Writer, depth: int, slot: int, stage_lines: list[str]
                    ) -> None:
        """A stage's lines; in the timed variant, inside a try whose `finally` adds their
        time to the slot's (a dropped record returns from within them)."""
        if not self.timed:
            for line in stage_lines:
                lines.add(depth, line)
            return
        lines.add(depth, "_stage_t = _clock()")
        lines.add(depth, "try:")
        for line in stage_lines:
            lines.add(depth + 1, line)
        lines.add(depth, "finally:")
        lines.add(depth + 1, f"_times[{slot}] += _clock() - _stage_t")

    def emit(self, lines: _Writer, depth: int, endpoint: Endpoint, sinks: list[KafkaSink],
             plain: bool) -> None:
        """Encode once per distinct encoder, then append (key, value) to each sink's output."""
        encoded: dict[str, str] = {}
        for sink in sinks:
            encoder = self.encoder_name(sink)
            if encoder not in encoded:
                encoded[encoder] = f"_b{len(encoded)}"
                self.encode(lines, depth, encoded[encoder], encoder, plain)
            key = (f"_encode_key({python_source(sink.key)})" if sink.key else "keys[i]")
            self.namespace["_encode_key"] = encode_key
            binding = SinkBinding(endpoint.pipeline, sink)
            if binding not in self.bindings:  # a sink named by several route rules
                self.bindings.append(binding)
            index = self.bindings.index(binding)
            lines.add(depth, f"_out{index}.append((i, {key}, {encoded[encoder]}))")

    def encode(self, lines: _Writer, depth: int, target: str, encoder: str, plain: bool
               ) -> None:
        """`target = encoder(r)`; JSON goes through msgspec when the result is the same."""
        if encoder != "_encode_json":
            lines.add(depth, f"{target} = {encoder}(r)")
            return
        self.namespace["_fast_encode"] = fast_json_encode
        if plain:  # only plain values can be here: whatever msgspec refuses, the reference says
            lines.add(depth, "try:")
            lines.add(depth + 1, f"{target} = _fast_encode(r)")
            lines.add(depth, "except Exception:")
            lines.add(depth + 1, f"{target} = _encode_json(r)")
            return
        self.namespace["_json_plain"] = json_plain
        lines.add(depth, f"{target} = _fast_encode(r) if _json_plain(r) else _encode_json(r)")

    def encoder_name(self, sink: KafkaSink) -> str:
        if sink.format == "json":
            self.namespace["_encode_json"] = encode_json
            return "_encode_json"
        if sink.format == "raw":
            self.namespace["_encode_raw"] = encode_raw
            return "_encode_raw"
        assert sink.schema is not None
        return self.bind(avro_encoder(sink.schema), "avro")


@dataclass(frozen=True)
class Decoding:
    """How a segment's source records become dicts."""

    decode: Callable[[bytes | None], dict[str, Any]]  # exact: decodes, or raises why not
    code: str  # the error code of a record that cannot be decoded
    fast: Callable[[bytes], Any] | None = None  # tried first when set
    plain: bool = True  # records hold only plain JSON values (Avro has bytes, NaN, dates)


def decoding_for(segment: Segment) -> Decoding:
    fmt = getattr(segment.source, "format", "json")
    if fmt == "raw":
        return Decoding(decode_raw, "DECODE_RAW")
    if fmt == "avro":
        schema = getattr(segment.source, "schema", None)
        assert schema is not None
        return Decoding(avro_decoder(schema), "DECODE_AVRO", plain=False)
    return Decoding(decode_json, "DECODE_JSON", fast=fast_json_decode)


class Kernel:
    """A compiled segment: `run(values, keys)` takes a batch through the whole tree."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        decoding = decoding_for(segment)
        self._decode_code = decoding.code
        compiler = _Compiler(segment, decoding.decode, decoding.fast, decoding.plain)
        compiler.namespace.update(callables())
        self.source = compiler.compile()
        self.slots = compiler.slots
        self.bindings = compiler.bindings
        namespace = compiler.namespace
        exec(compile(self.source, f"<uee kernel {segment.group_id}>", "exec"), namespace)
        self._run: Callable[..., Any] = namespace["_kernel"]
        # The timed variant, compiled the same way, so it binds the same names: those that
        # hold state (a diff stage's hashes) are then made the very objects of the first.
        timed = _Compiler(segment, decoding.decode, decoding.fast, decoding.plain, timed=True)
        timed.namespace.update(callables())
        timed_source = timed.compile()
        for name, value in timed.namespace.items():
            if isinstance(value, DiffState):
                timed.namespace[name] = namespace[name]
        exec(compile(timed_source, f"<uee timed kernel {segment.group_id}>", "exec"),
             timed.namespace)
        self._run_timed: Callable[..., Any] = timed.namespace["_kernel"]
        # The state its stages keep (diff), persisted by the agent's checkpoints.
        self.states = [v for v in namespace.values() if isinstance(v, DiffState)]

    def run(self, values: list[bytes | None], keys: list[bytes | None],
            rejects: dict[int, tuple[str, str]] | None = None, timed: bool = False
            ) -> KernelResult:
        """`rejects`: records the source refused (index -> code, message); no stage sees
        them, they fail at decoding with the source's code. `timed`: run the variant that
        times each stage (`stage_seconds` of the result)."""
        if rejects:
            values = [_UNDECODABLE if i in rejects else v for i, v in enumerate(values)]
        seconds = None
        if timed:
            outputs, raw_failures, drops, emitted, seconds = self._run_timed(values, keys)
        else:
            outputs, raw_failures, drops, emitted = self._run(values, keys)
        failures = [
            Failure(index, self.slots[slot], error_code(self.slots[slot], error,
                                                        self._decode_code), error)
            if not rejects or index not in rejects
            else Failure(index, self.slots[slot], rejects[index][0],
                         RecordError(*rejects[index]))
            for index, slot, error in raw_failures
        ]
        delivered = dict(zip(self.segment.pipelines, emitted, strict=True))
        return KernelResult(outputs, failures, drops, delivered, seconds)

    def stage_seconds(self, seconds: list[float]) -> dict[tuple[str, str], float]:
        """A timed batch's time in each stage, per (pipeline, stage id): a stage shared by
        several pipelines counts for each."""
        out: dict[tuple[str, str], float] = {}
        for slot, spent in zip(self.slots, seconds, strict=True):
            for key in slot.stage_ids:
                out[key] = out.get(key, 0.0) + spent
        return out

    def filtered_per_stage(self, drops: list[int]) -> dict[tuple[str, str], int]:
        """Records dropped on purpose, per (pipeline, stage id)."""
        counts: dict[tuple[str, str], int] = {}
        for slot, count in zip(self.slots, drops, strict=True):
            if count:
                for key in slot.stage_ids:
                    counts[key] = counts.get(key, 0) + count
        return counts

    def filtered(self, drops: list[int]) -> dict[str, int]:
        """Records each pipeline dropped on purpose (filters, diff, empty explode, route)."""
        counts = dict.fromkeys(self.segment.pipelines, 0)
        for (pipeline, _), count in self.filtered_per_stage(drops).items():
            counts[pipeline] += count
        return counts
