"""Resolve names a pipeline file refers to: Avro schema files and Python functions.

Both are looked up relative to the pipeline file, so a project can be validated
from any working directory.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro


@dataclass(frozen=True)
class AvroSchema:
    """A parsed .avsc file; `path` is resolved, `fingerprint` identifies its content."""

    path: str
    fingerprint: str
    parsed: Any = field(compare=False, hash=False, repr=False)


PYTHON_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*$")


class ResolveError(Exception):
    """A name that does not resolve; `code` is the diagnostic code to report."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def schema_candidates(name: str, pipeline_file: str) -> list[Path]:
    """Where `schema: name` may live: beside the file, then in a `schemas/` folder beside it
    or above it, then in ./schemas, then among the schemas that ship with uee."""
    given = Path(name)
    if given.is_absolute():
        return [given]
    base = Path(pipeline_file).resolve().parent
    candidates = [base / given]
    for folder in (base, *base.parents):
        candidates.append(folder / "schemas" / given)
    candidates.append(Path.cwd() / "schemas" / given)
    # Installed as files (wheels are unpacked), so a path names it.
    candidates.append(Path(str(files("uee.schemas").joinpath(*given.parts))))
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
    fields = document.get("fields", []) if isinstance(document, dict) else []
    names = [str(f.get("name")) for f in fields if isinstance(f, dict)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ResolveError("DSL_BAD_SCHEMA", f"schema '{path}' has the field(s) "
                           f"{', '.join(duplicated)} more than once")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return AvroSchema(path, fingerprint, parsed)


def resolve_function(target: str, pipeline_file: str) -> tuple[Callable[..., Any], str]:
    """Import `module:function` and say where it came from.

    A module file beside the pipeline file is loaded from that file, under a name of its
    own, so two folders may each have their own `udfs.py`; a package beside it is imported
    with that folder first on the path; anything else comes from the working directory or
    PYTHONPATH, as a user running `uee` from their project expects.
    """
    if not PYTHON_TARGET_RE.match(target):
        raise ResolveError("DSL_BAD_PYTHON", f"'{target}' is not of the form "
                           "package.module:function")
    module_name, function_name = target.split(":")
    folder = Path(pipeline_file).resolve().parent
    try:
        module = _import_beside(module_name, folder)
    except ModuleNotFoundError as exc:
        if exc.name and module_name != exc.name and not module_name.startswith(exc.name + "."):
            raise ResolveError("DSL_PYTHON_IMPORT", f"importing '{module_name}' failed: it "
                               f"needs module '{exc.name}', which is not installed",
                               f"pip install the package that provides '{exc.name}'") from exc
        raise ResolveError("DSL_UNKNOWN_FUNCTION", f"cannot import module '{module_name}' "
                           f"({exc})", "is it beside the pipeline file, or on PYTHONPATH?"
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
    origin = getattr(module, "__file__", None) or module_name
    return function, str(origin)


def _import_beside(module_name: str, folder: Path) -> ModuleType:
    top = module_name.split(".")[0]
    single_file = folder / f"{module_name}.py"
    if "." not in module_name and single_file.is_file():
        unique = f"uee_udf_{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}_{module_name}"
        if unique in sys.modules:
            return sys.modules[unique]
        spec = importlib.util.spec_from_file_location(unique, single_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        return module
    if (folder / top / "__init__.py").is_file():
        sys.path.insert(0, str(folder))
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(str(folder))
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    return importlib.import_module(module_name)
