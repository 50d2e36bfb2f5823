"""uee, the Unified ETL Engine: pipelines declared in files, run on Kafka as Faust agents.

The installed package is `uee` alone. The repository keeps one folder per part, each
installed under it (pyproject.toml, `package-dir`):

    core/        -> uee             the root: errors every part shares
    dsl/         -> uee.dsl         the language: load, validate, optimize, plan
    streams/     -> uee.streams     the runtime: kernels, agents, the Faust worker, the CLI
    connectors/  -> uee.connectors  sources and sinks behind small interfaces
    schemas/     -> uee.schemas     the Avro schemas that ship with uee
    testing/     -> uee.testing     in-memory sources and sinks for tests without a broker

The language never imports the runtime; connectors import neither.
"""

__version__ = "0.1.0"
