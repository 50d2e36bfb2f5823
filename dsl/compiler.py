"""Front door of the DSL: files and directories in, validated pipelines out."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from uee.dsl.errors import Diagnostic, PipelineFileError, Position
from uee.dsl.ir import Pipeline
from uee.dsl.loader import Node, Sequence, load_file
from uee.dsl.validate import validate_documents

PIPELINE_SUFFIXES = (".yaml", ".yml")


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and every *.yaml / *.yml inside given directories, sorted."""
    files: list[Path] = []
    missing: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in PIPELINE_SUFFIXES
                           and p.is_file())
            if not found:
                missing.append(Diagnostic("DSL_FILE", "no pipeline files (*.yaml, *.yml) in this "
                                          "directory", Position(str(path), 1, 1)))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Diagnostic("DSL_FILE", "no such file or directory",
                                      Position(str(path), 1, 1)))
    if missing:
        raise PipelineFileError(missing)
    unique: dict[Path, Path] = {}
    for path in files:  # a file named twice (or inside a named folder) is read once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def load_pipelines(paths: Iterable[str | Path]) -> list[Pipeline]:
    """Load, check and return every pipeline; raise with all diagnostics of all files."""
    files = expand_paths(paths)
    documents: list[Node] = []
    diagnostics: list[Diagnostic] = []
    for path in files:
        try:
            document = load_file(path)
        except PipelineFileError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        if document is None or (isinstance(document, Sequence) and not document.items):
            diagnostics.append(Diagnostic("DSL_EMPTY", "the file holds no pipeline",
                                          Position(str(path), 1, 1)))
        else:
            documents.append(document)
    pipelines, problems = validate_documents(documents)
    diagnostics.extend(problems)
    if not files and not diagnostics:
        diagnostics.append(Diagnostic("DSL_FILE", "no pipeline files (*.yaml, *.yml) found",
                                      Position(".", 1, 1)))
    if diagnostics:
        raise PipelineFileError(diagnostics)
    return pipelines
