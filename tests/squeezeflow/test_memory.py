"""A stage's peak memory, and the heap the garbage collector skips while a stage runs."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from squeezeflow.memory import StagePeak, heap_frozen


class Node:
    pass


def test_objects_from_before_a_stage_are_skipped_during_it_and_collected_as_usual_after():
    before = gc.get_freeze_count()
    old = Node()
    old.self = old  # a cycle that exists before the stage
    gone = weakref.ref(old)
    with heap_frozen():
        assert gc.get_freeze_count() > before
        del old
        gc.collect()
        assert gone() is not None  # frozen: not even a full pass looks at it
        young = Node()
        young.self = young
        young_ref = weakref.ref(young)
        del young
        gc.collect()
        assert young_ref() is None  # what the stage itself makes is collected as usual
    assert gc.get_freeze_count() == before
    gc.collect()
    assert gone() is None


def test_a_failing_stage_hands_the_heap_back():
    before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), heap_frozen():
        raise RuntimeError("the stage failed")
    assert gc.get_freeze_count() == before


def test_the_peak_is_the_blocks_own_and_above_what_it_began_with():
    with StagePeak() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
    assert mem.peak_mb >= mem.start_mb + 60
    del block
