"""Narrow replacements of one library function for the length of one call, where the library does work squeezeflow
already knows the answer to (each use says why)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def swapped(module, name: str, value):
    """`module.name` is `value` inside the block, and what it was after it."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)
