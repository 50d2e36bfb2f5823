"""Faust's GlobalTable, with a persisted offset that never runs ahead of what its RocksDB
store holds.

A GlobalTable writes a row twice on the worker that sets it: into RocksDB at once, and
again when it reads the row back from its own changelog (every worker reads a global
table's changelog, the writer too). Faust also records the changelog offset in RocksDB as
soon as the broker acknowledges the write, and a restart reads the changelog only after
that offset. Measured here: the row for offset 2 written, then the reader applying
offset 1 over it (an older value), then offset 2 recorded as persisted, then kill -9: the
restarted worker's store held the older row and read nothing more, so a provider resumed
from its checkpoint before last (uee.streams.state). Here the offset is recorded only by
the changelog reader, in the same order as the rows it applies, so after a crash the
store is at worst behind, and recovery reads the rest.
"""

from __future__ import annotations

from typing import Any

import faust


class GlobalTable(faust.GlobalTable):  # type: ignore[misc]  # faust is untyped here
    def _on_changelog_sent(self, fut: Any) -> None:
        fut.result()  # as Faust's: a failed send raises here; the offset is not recorded
