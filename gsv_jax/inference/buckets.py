"""Shape buckets: the padded sizes every jitted inference call is compiled for.

A jitted function compiles once per input shape, so lengths and batch sizes are rounded up to a
few sizes and masks carry the true lengths (docs/performance.md). Every inference engine asks
this module, so the ladders are defined once:

* :func:`ladder`   - ``unit`` times 1..16, then 8 steps per octave (at most 1/8 padding): sequence
  lengths of S2, HuBERT, speaker verification.
* :func:`pow2`     - the next power of two: batch sizes, the S1 cache and attention windows.
* :func:`multiple` - the next multiple of a step: S1 phoneme / prompt padding, decode chunks.
* :func:`first_fit` - the smallest size of a fixed table: BERT token lengths, batch sizes
  (:func:`batch`: 1, 2, 4, 6, 8, 12, ... so that a batch of any size reuses a few programs).
"""
from __future__ import annotations

from collections.abc import Sequence


def ladder(n: int, unit: int = 1, minimum: int = 1) -> int:
    """Smallest ``unit * m >= max(n, minimum)`` with m in 1..16, past 16 units rounded up to an
    eighth of the octave (18, 20, ..., 32, 36, ...): about 8 shapes per doubling."""
    m = max(1, -(-max(int(n), int(minimum)) // unit))
    if m > 16:
        step = 2 ** (m.bit_length() - 4)  # an eighth of the octave's base
        m = -(-m // step) * step
    return unit * m


def pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two ``>= max(n, minimum)`` (``minimum`` itself when larger)."""
    return max(int(minimum), 1 << max(0, (max(int(n), 1) - 1).bit_length()))


def multiple(n: int, step: int) -> int:
    """Smallest multiple of ``step`` that is ``>= n`` and at least ``step``."""
    return max(step, -(-int(n) // step) * step)


def first_fit(n: int, sizes: Sequence[int], limit: int) -> int:
    """Smallest of ``sizes`` that holds ``n``, else ``limit`` (the caller checks ``n <= limit``)."""
    return min([s for s in sizes if s >= n] + [limit])


BATCH_SIZES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def batch(n: int) -> int:
    """Rows a batch of ``n`` is padded to (up to 64 at most 41 % more, 17 -> 24; then powers of two)."""
    return first_fit(n, BATCH_SIZES, pow2(n))
