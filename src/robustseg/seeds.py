"""Seeds derived from a run's seed and a text (a case id, a condition, a training step), stable across runs."""

from __future__ import annotations

import zlib

__all__ = ["derive_seed"]


def derive_seed(seed: int, text: str) -> int:
    """A 63-bit seed fixed by ``seed`` and ``text`` (e.g. ``"<case id>|<condition>"``), stable across runs."""
    return (int(seed) * 1_000_003 + zlib.crc32(text.encode())) % (2**63)
