# A uee worker. Point it at Kafka with --bootstrap or UEE_BOOTSTRAP.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/uee

COPY pyproject.toml README.md ./
COPY dsl ./dsl
COPY streams ./streams
COPY connectors ./connectors
COPY bench ./bench
RUN pip install .

COPY schemas ./schemas
COPY examples ./examples

RUN useradd --create-home --uid 1000 uee
USER uee

ENTRYPOINT ["uee"]
CMD ["--help"]
