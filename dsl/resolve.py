"""Resolve names a pipeline file refers to: Avro schema files and Python functions.

Both are looked up relative to the pipeline file, so a project can be validated
from any working directory.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from dsl.ir import AvroSchema

PYTHON_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*$")


class ResolveError(Exception):
    """A name that does not resolve; `code` is the diagnostic code to report."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def schema_candidates(name: str, pipeline_file: str) -> list[Path]:
    """Where `schema: name` may live: beside the file, then in a `schemas/` folder beside it
    or above it, then in ./schemas."""
    given = Path(name)
    if given.is_absolute():
        return [given]
    base = Path(pipeline_file).resolve().parent
    candidates = [base / given]
    for folder in (base, *base.parents):
        candidates.append(folder / "schemas" / given)
    candidates.append(Path.cwd() / "schemas" / given)
    return candidates


def resolve_schema(name: str, pipeline_file: str) -> AvroSchema:
    for candidate in schema_candidates(name, pipeline_file):
        if candidate.is_file():
            return _load_schema(str(candidate.resolve()))
    raise ResolveError("DSL_UNKNOWN_SCHEMA", f"schema file '{name}' not found",
                       "put it in schemas/ or give a path relative to the pipeline file")


@lru_cache(maxsize=256)
def _load_schema(path: str) -> AvroSchema:
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ResolveError("DSL_BAD_SCHEMA", f"schema '{path}' is not JSON: {exc}") from exc
    try:
        parsed = fastavro.parse_schema(document)
    except Exception as exc:  # fastavro raises SchemaParseException, ValueError, KeyError...
        raise ResolveError("DSL_BAD_SCHEMA",
                           f"schema '{path}' is not a valid Avro schema: {exc}") from exc
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return AvroSchema(path, fingerprint, parsed)


def resolve_function(target: str, pipeline_file: str) -> Callable[..., Any]:
    """Import `package.module:function`, with the pipeline's folder and the working
    directory importable, as a user running `uee` from their project expects."""
    if not PYTHON_TARGET_RE.match(target):
        raise ResolveError("DSL_BAD_PYTHON", f"'{target}' is not of the form "
                           "package.module:function")
    module_name, function_name = target.split(":")
    for folder in (str(Path(pipeline_file).resolve().parent), str(Path.cwd())):
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ResolveError("DSL_UNKNOWN_FUNCTION", f"cannot import module '{module_name}' "
                           f"({exc})", "is it on PYTHONPATH or beside the pipeline file?"
                           ) from exc
    except Exception as exc:
        raise ResolveError("DSL_PYTHON_IMPORT", f"importing '{module_name}' raised "
                           f"{type(exc).__name__}: {exc}") from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise ResolveError("DSL_UNKNOWN_FUNCTION",
                           f"module '{module_name}' has no function '{function_name}'")
    if not callable(function):
        raise ResolveError("DSL_UNKNOWN_FUNCTION", f"'{target}' is not callable")
    return function  # type: ignore[no-any-return]
