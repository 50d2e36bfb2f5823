# A uee worker. Point it at Kafka with --bootstrap or UEE_BOOTSTRAP.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/uee

COPY pyproject.toml README.md ./
COPY core ./core
COPY dsl ./dsl
COPY streams ./streams
COPY connectors ./connectors
COPY schemas ./schemas
COPY testing ./testing
# Installs the package `uee` (the folders above, mapped) with its schemas; not the bench.
RUN pip install . && rm -rf build

COPY examples ./examples

RUN useradd --create-home --uid 1000 uee
USER uee

ENTRYPOINT ["uee"]
CMD ["--help"]
