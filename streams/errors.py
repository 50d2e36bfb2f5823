"""The registry of record-level error codes: each with whether retrying can help, and what
it means. Dead letters carry the code (`uee.error.code`) and the flag
(`uee.error.retryable`); the README's table is checked against this one by a test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    retryable: bool
    summary: str


_CODES = [
    ErrorCode("DECODE_JSON", False, "the value is not JSON, or not a JSON object"),
    ErrorCode("DECODE_AVRO", False, "the value is not Avro of the source's schema"),
    ErrorCode("DECODE_RAW", False, "the value is not UTF-8 text"),
    ErrorCode("EXPR_MISSING_FIELD", False,
              "an expression, select or rename read a field or index the record lacks"),
    ErrorCode("EXPR_TYPE", False, "an operation on a value of the wrong type"),
    ErrorCode("EXPR_ARITHMETIC", False, "division by zero or overflow"),
    ErrorCode("EXPR_VALUE", False, "a conversion failed, like int('x')"),
    ErrorCode("EXPR_ERROR", False, "any other failure inside an expression"),
    ErrorCode("VALIDATION_SCHEMA", False, "a validate stage: the record does not match"),
    ErrorCode("TRANSFORM_EXCEPTION", False, "a python stage raised an exception"),
    ErrorCode("TRANSFORM_RESULT", False,
              "a python stage returned something other than a record, None or records"),
    ErrorCode("ENCODE_JSON", False, "the result cannot be written as JSON"),
    ErrorCode("ENCODE_AVRO", False, "the result does not fit the sink's Avro schema"),
    ErrorCode("ENCODE_RAW", False, "format raw needs a field 'value'"),
    ErrorCode("SINK_REJECTED", False, "the sink refused the record, e.g. too large"),
    ErrorCode("SINK_UNAVAILABLE", True, "the sink could not be reached in time"),
    ErrorCode("HTTP_BAD_BODY", False, "an HTTP source's response is not JSON, or holds no "
              "list of items where the source expects it"),
    ErrorCode("HTTP_ITEM_INVALID", False, "an HTTP source's item lacks its cursor or id field, "
              "or is not an object"),
    ErrorCode("UNKNOWN_ERROR", False, "an error uee has no code for (please report it)"),
]

REGISTRY: dict[str, ErrorCode] = {c.code: c for c in _CODES}


def lookup(code: str) -> ErrorCode:
    """The registered code, or the generic one: an unknown code never crashes anything."""
    return REGISTRY.get(code) or REGISTRY["UNKNOWN_ERROR"]
