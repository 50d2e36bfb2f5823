"""The interpreter a worker's threads share (streams.interpreter)."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from uee.streams.interpreter import frozen_heap, switch_interval
from uee.streams.settings import Settings


def test_a_run_shortens_the_interpreters_switch_interval_and_puts_it_back() -> None:
    before = sys.getswitchinterval()
    assert Settings().switch_interval_ms == 1.0
    with switch_interval(Settings().switch_interval_ms):
        assert sys.getswitchinterval() == pytest.approx(0.001)
    assert sys.getswitchinterval() == before


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _pair() -> tuple[_Node, _Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a, b


def test_what_exists_is_left_out_of_collections_for_the_run_and_given_back_after() -> None:
    assert gc.get_freeze_count() == 0
    garbage = weakref.ref(_pair()[0])  # unreachable already: collected before the freeze
    kept = [_pair()]
    node = weakref.ref(kept[0][0])
    with frozen_heap():
        assert garbage() is None
        assert gc.get_freeze_count() > 1000  # every module, function and class so far
        kept.clear()  # the cycle is garbage now, but frozen: no collection takes it
        gc.collect()
        assert node() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert node() is None


def test_a_heap_frozen_by_someone_else_is_left_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
