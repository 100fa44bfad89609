"""load_sv / SV: golden parity, padded batches equal solo rows, no steady-state recompiles, bad input.

Tolerance vs the golden: 1e-4 relative to the largest magnitude; batch rows vs solo rows: 1e-6.
"""
import numpy as np
import pytest

from gsv_jax.convert.sv import NotSVError
from gsv_jax.inference.sv import SV, load_sv
from tests.conftest import golden_path


@pytest.fixture(scope="module")
def golden():
    return np.load(golden_path("sv_eres2netv2_tiny.npz"))


@pytest.fixture(scope="module")
def sv():
    return load_sv(golden_path("sv_eres2netv2_tiny.ckpt"))


def _rel(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max()


def test_embed_and_fbank_match_the_golden(sv, golden):
    assert isinstance(sv, SV) and sv.dim == 1280
    emb = sv.embed(golden["wav16k"])
    assert emb.shape == (1280,) and emb.dtype == np.float32
    assert _rel(emb, golden["embed"][0]) < 1e-4
    feats = sv.fbank(golden["wav16k"])
    assert feats.shape == (298, 80) and _rel(feats, golden["fbank"]) < 1e-4
    assert _rel(sv.fbank(golden["batch_wav16k"]), golden["batch_fbank"]) < 1e-4


def test_batches_equal_solo_rows_and_do_not_recompile(sv, golden):
    a, b = golden["wav16k"], golden["wav16k_odd"]  # 298 and 231 frames: different lengths, odd sizes
    solo = [sv.embed(a), sv.embed(b)]
    assert _rel(solo[1], golden["embed_odd"][0]) < 1e-4
    from_list = sv.embed([a, b])
    padded = np.zeros((2, len(a)), np.float32)
    padded[0], padded[1, : len(b)] = a, b
    padded[1, len(b):] = 0.5  # whatever lies past a row's length is ignored
    from_batch = sv.embed(padded, lengths=[len(a), len(b)])
    for out in (from_list, from_batch):
        assert out.shape == (2, 1280)
        for i in range(2):
            assert _rel(out[i], solo[i]) < 1e-6
    # steady state: other lengths in the same buckets (289..320 and 225..256 frames) reuse the programs
    n = sv.compilations
    sv.embed([a[:47000], b[:36000]])
    sv.embed(a[:46500])
    sv.embed(b[:37000])
    edge = np.concatenate([b, b])[: 400 + 255 * 160 + 50]  # exactly 256 frames + 50 unused samples
    assert _rel(sv.embed(edge), sv.embed([edge, a])[0]) < 1e-6
    sv.embed(padded[::-1], lengths=[len(b), len(a)])
    assert sv.compilations == n


@pytest.mark.parametrize("audio,kw,match", [
    (np.zeros(0, np.float32), {}, "empty"),
    (np.zeros((2, 3, 4000), np.float32), {}, r"shaped \[N\] or \[B, N\]"),
    (np.full(4000, np.nan, np.float32), {}, "NaN or infinite"),
    (np.array([0.0] * 3999 + [np.inf], np.float32), {}, "NaN or infinite"),
    (np.zeros(4000, np.int16), {}, "int16.*divide int16 PCM by 32768"),
    (np.zeros(399, np.float32), {}, "399 samples.*at least 400"),
    ([], {}, "empty list"),
    ([np.zeros(4000, np.float32), np.zeros((1, 4000), np.float32)], {}, "waveform 1 is"),
    ([np.zeros(4000, np.float32), np.zeros(100, np.float32)], {}, "row 1 has 100 samples"),
    (np.zeros((2, 4000), np.float32), {"lengths": [4000]}, "lengths must be 2 sample counts"),
    (np.zeros((2, 4000), np.float32), {"lengths": [4000, 4001]}, "lengths must be"),
    (np.zeros(4000, np.float32), {"lengths": [4000]}, "not a single"),
])
def test_bad_input(sv, audio, kw, match):
    n = sv.compilations
    with pytest.raises(ValueError, match=match):
        sv.embed(audio, **kw)
    assert sv.compilations == n  # refused before any work


def test_fbank_bad_input(sv):
    with pytest.raises(ValueError, match="empty"):
        sv.fbank([])
    with pytest.raises(ValueError, match="NaN"):
        sv.fbank(np.full(800, np.nan))


def test_wrong_kind_of_file():
    with pytest.raises(NotSVError, match="SoVITS"):
        load_sv(golden_path("s2_v2ProPlus_tiny.pth"))
    with pytest.raises(NotSVError, match="GPT"):
        load_sv(golden_path("s1_v2_tiny.ckpt"))
