"""User functions for the `python` stage of examples/fanout.yaml.

A python stage names `module:function`; the module is found beside the pipeline
file, in the working directory, or on PYTHONPATH. The function takes a record (a
dict) and returns a record, None (drop it), or a list of records.
"""

from __future__ import annotations

from typing import Any

REGIONS = {"EUR": "europe", "GBP": "europe", "USD": "americas"}


def add_region(record: dict[str, Any]) -> dict[str, Any]:
    record["region"] = REGIONS.get(record["currency"], "elsewhere")
    return record
