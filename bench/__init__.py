"""Throughput benchmark: uee against the other ways to do the same work, in one run."""
