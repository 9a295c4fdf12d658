"""A stage's peak memory, the heap the garbage collector skips while a stage runs, and the freed memory handed back
after it."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from squeezeflow.memory import StagePeak, heap_frozen, release_freed, rss_mb, trim_free_memory


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


def _freed_heap_mb(make) -> tuple[float, bytearray]:
    """RSS the process keeps after freeing 200 MB of small C-heap blocks that a live block above them pins."""
    blocks = make()
    pin = bytearray(4096)  # allocated last, at the heap's top: free() alone cannot shrink the heap past it
    held = rss_mb()
    del blocks
    kept = rss_mb()
    assert held - kept < 50, "the allocator returned the blocks by itself: nothing here to test"
    return kept, pin


@pytest.mark.skipif(not trim_free_memory(), reason="malloc_trim is glibc's")
def test_freed_blocks_inside_the_heap_go_back_to_the_system():
    kept, _pin = _freed_heap_mb(lambda: [bytearray(4096) for _ in range(50_000)])
    assert trim_free_memory()
    assert kept - rss_mb() > 150


class Holder:
    pass


@pytest.mark.skipif(not trim_free_memory(), reason="malloc_trim is glibc's")
def test_after_a_stage_its_cycles_are_collected_and_their_memory_returned():
    def cyclic():
        holder = Holder()
        holder.self, holder.blocks = holder, [bytearray(4096) for _ in range(50_000)]
        return [holder]  # dropped below, the cycle keeps it alive until a collection

    with heap_frozen():
        kept, _pin = _freed_heap_mb(cyclic)
        release_freed()
        assert kept - rss_mb() > 150
