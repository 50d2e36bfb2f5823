"""Avro schemas that ship with uee (package data, found with importlib.resources)."""
