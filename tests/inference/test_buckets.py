"""The one shape-bucketing module: sizes as the engines used before it (the compile-count and parity
tests depend on them), checked exhaustively over the lengths that occur."""
import math

import pytest

from gsv_jax.inference import buckets


def _old_s2(n, minimum=16, steps=8):  # the former S2 ``bucket_length``
    n = max(int(n), 1)
    if n <= minimum:
        return minimum
    step = max(1, 2 ** (math.floor(math.log2(n)) - int(math.log2(steps))))
    return -(-n // step) * step


def _old_ladder(n, unit):  # the former features ``_ladder`` (HuBERT samples, SV frames)
    m = max(1, math.ceil(n / unit))
    if m > 16:
        step = 2 ** (m.bit_length() - 4)
        m = math.ceil(m / step) * step
    return unit * m


def test_ladder_matches_the_former_helpers():
    for n in range(1, 5000):
        assert buckets.ladder(n, minimum=16) == _old_s2(n), n
        assert buckets.ladder(n * 37, 3200) == _old_ladder(n * 37, 3200), n
        assert buckets.ladder(n, 32) == _old_ladder(n, 32), n
        got = buckets.ladder(n, minimum=16)
        assert n <= got and (n <= 16 or got <= n * 1.125)  # at most an eighth of padding


def test_pow2_multiple_first_fit():
    for n in range(1, 3000):
        assert buckets.pow2(n, 256) == max(256, 1 << max(0, math.ceil(math.log2(n))))
        assert buckets.pow2(n) == 1 << max(0, (n - 1).bit_length())
        assert buckets.multiple(n, 32) == max(32, -(-n // 32) * 32)
    assert buckets.multiple(0, 16) == 16
    table = (16, 32, 64, 96)
    assert [buckets.first_fit(n, table, 512) for n in (1, 16, 17, 90, 97)] == [16, 16, 32, 96, 512]


@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 1000])
def test_ladder_is_idempotent(n):
    b = buckets.ladder(n, minimum=16)
    assert buckets.ladder(b, minimum=16) == b


def test_batch_sizes():
    assert [buckets.batch(n) for n in range(1, 10)] == [1, 2, 4, 4, 6, 6, 8, 8, 12]
    assert buckets.batch(65) == 128
    assert all(n <= buckets.batch(n) <= 1.5 * n for n in range(1, 65))
