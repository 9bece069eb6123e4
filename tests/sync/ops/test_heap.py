"""The heap set aside from the garbage collector (sync/ops/heap.py)."""

from __future__ import annotations

import gc
import weakref


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_what_lives_is_frozen_and_garbage_is_not() -> None:
    from sync.ops.heap import freeze_heap

    kept = Node()
    dropped = Node()
    dropped_ref = weakref.ref(dropped)
    del dropped
    frozen = freeze_heap()
    assert dropped_ref() is None  # collected first, not frozen for the process's life
    # (the count itself moves: a frozen object freed by its last reference leaves it)
    assert frozen > 0 and gc.get_freeze_count() > 0
    assert gc.is_tracked(kept)
    gc.collect()
    assert kept.me is kept


def test_what_is_made_after_is_still_collected() -> None:
    from sync.ops.heap import freeze_heap

    freeze_heap()
    later = Node()
    later_ref = weakref.ref(later)
    del later
    gc.collect()
    assert later_ref() is None
