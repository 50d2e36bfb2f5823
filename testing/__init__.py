"""In-memory sources and sinks for testing pipelines' loops without a broker (in the spirit
of bytewax's TestingSource and TestingSink): `from uee.testing import TestingSource,
TestingSink`. The broker tests stay; these make ordering, retries, breakers and pauses
quick to pin down."""

from uee.testing.memory import Journal, TestingSink, TestingSource

__all__ = ["Journal", "TestingSink", "TestingSource"]
