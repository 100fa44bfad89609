"""SoVITS v3/v4 synthesis API against the original's synthesis functions (``v3_tiny*.npz``,
``v3_lora_tiny.npz``): one chunk + vocoder, sequential chunks (a target longer than one chunk),
the batched variant with SOLA, a LoRA model, batched CFM rows == solo, refusals, compile counts.

Tolerances: mels 1e-5 relative to the largest magnitude (measured ~1e-6); waveforms 1e-4 absolute
(measured < 7e-5; BigVGAN fp32 convolution order); SOLA shifts identical.
"""
import numpy as np
import pytest

from tests.conftest import golden_path

REL = 1e-5
WAV_ABS = 1e-4


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def s2():
    from gsv_jax.inference.v3 import load_s2_v3

    return load_s2_v3(golden_path("s2Gv3_tiny.pth"))


@pytest.fixture(scope="module")
def voc():
    from gsv_jax.inference.v3 import load_vocoder

    return load_vocoder(golden_path("bigvgan_v3_tiny"))


@pytest.fixture(scope="module")
def g():
    return dict(np.load(golden_path("v3_tiny.npz")))


def _ref(g):
    return g["ref_codes"], g["ref_phones"], g["refer_spec"], g["ref_mel"]


def test_sequential_chunks_longer_than_one_chunk(s2, voc, g):
    c = dict(np.load(golden_path("v3_tiny_chunk.npz")))
    noises = [c["chunk0_noise"], c["chunk1_noise"]]
    wav, mel = s2.synthesize_chunked(c["chunk_codes"], c["chunk_phones"], *_ref(g), vocoder=voc,
                                     sample_steps=int(c["chunk_steps"]), noises=noises, return_mel=True)
    assert s2.T_chunk - int(c["chunk_T_min"]) == int(c["chunk_len"])
    assert mel.shape[2] > int(c["chunk_len"])  # two chunks
    # chunk 1's prompt is the tail of chunk 0's output (normalised)
    from gsv_jax.audio import norm_spec

    t_min, L = int(c["chunk_T_min"]), int(c["chunk_len"])
    assert rel_err(np.asarray(norm_spec(mel[0, :, L - t_min: L])), c["chunk1_mel2"][0]) < REL
    assert wav.shape == c["chunk_wav"].shape == (mel.shape[2] * 256,)
    assert np.abs(wav - c["chunk_wav"]).max() < WAV_ABS
    with pytest.raises(ValueError, match="needs 2 chunks"):
        s2.synthesize_chunked(c["chunk_codes"], c["chunk_phones"], *_ref(g), vocoder=voc, sample_steps=4,
                              noises=noises[:1])
    with pytest.raises(ValueError, match="longer than one chunk"):
        s2.decode_mel(c["chunk_codes"], c["chunk_phones"], *_ref(g), sample_steps=4)


@pytest.mark.slow
def test_batched_with_sola(s2, voc, g):
    b = dict(np.load(golden_path("v3_tiny_batch.npz")))
    codes = [b["batch_seg0_codes"], b["batch_seg1_codes"]]
    phones = [b["batch_seg0_phones"], b["batch_seg1_phones"]]
    frags, det = s2.synthesize_batched(codes, phones, *_ref(g), vocoder=voc, sample_steps=int(b["batch_steps"]),
                                       noise=b["batch_noise"], return_details=True)
    assert det["chunks"] == b["batch_noise"].shape[0] == 2
    assert det["sola_shifts"] == list(b["batch_sola_idx"])
    assert rel_err(det["mel"], b["batch_mel"]) < REL
    for i, f in enumerate(frags):
        ref = b[f"batch_frag{i}"]
        assert f.shape == ref.shape
        assert np.abs(f - ref).max() < WAV_ABS


def test_lora_model_end_to_end(g):
    from gsv_jax.inference.v3 import load_s2_v3

    lg = dict(np.load(golden_path("v3_lora_tiny.npz")))
    s2 = load_s2_v3(golden_path("s2Gv3_lora_tiny.pth"), base=golden_path("s2Gv3_tiny.pth"))
    ge = s2.ref_embedding(g["refer_spec"])
    assert rel_err(np.asarray(ge)[0, 0], lg["lora_ge"][0, :, 0]) < REL
    assert rel_err(s2.encode(g["single_codes"], g["single_phones"], ge), lg["lora_fea_todo"][0]) < REL
    mel = s2.decode_mel(g["single_codes"], g["single_phones"], *_ref(g), sample_steps=4, noise=g["single_noise"])
    assert rel_err(mel, lg["lora_steps4_mel"]) < REL  # (its waveform is the vocoder's job: tests/models/test_vocoders.py)


def test_batched_cfm_rows_equal_solo(s2, g):
    """Rows of different lengths in one CFM batch == each row alone (masked padding)."""
    ge, fea_ref, mel2 = s2.prompt(*_ref(g)[:2], g["refer_spec"], g["ref_mel"])
    fea = s2.encode(g["single_codes"], g["single_phones"], ge)
    chunks = [fea, fea[:, :97]]
    prompts = [mel2, mel2[:, -150:]]
    refs = [fea_ref, fea_ref[:, -150:]]
    both = s2.cfm(refs, prompts, chunks, 4, seed=3)
    rng = np.random.default_rng(3)
    noises = [rng.standard_normal((p.shape[1] + c.shape[1], 100), dtype=np.float32).T for p, c in zip(prompts, chunks)]
    for b in range(2):
        solo = s2.cfm([refs[b]], [prompts[b]], [chunks[b]], 4, noises=[noises[b]])[0]
        assert solo.shape == both[b].shape
        assert rel_err(both[b], solo) < REL


def test_second_similar_segment_compiles_nothing(s2, g):
    s2.decode_mel(g["single_codes"], g["single_phones"], *_ref(g), sample_steps=4, seed=0)
    before = (s2._jit_ref._cache_size(), s2._jit_encode._cache_size(), s2._jit_cfm._cache_size())
    for n_codes, n_phones in ((39, 17), (37, 18)):
        mel = s2.decode_mel(g["single_codes"][:, :n_codes], g["single_phones"][:, :n_phones], *_ref(g),
                            sample_steps=4, seed=n_codes)
        assert mel.shape == (1, 100, int(np.floor(2 * n_codes * 1.875)))
    assert (s2._jit_ref._cache_size(), s2._jit_encode._cache_size(), s2._jit_cfm._cache_size()) == before


def test_refusals(s2, g):
    from gsv_jax.inference.v3 import load_vocoder

    with pytest.raises(ValueError, match="prompt_text cannot be empty"):
        s2.decode_mel(g["single_codes"], g["single_phones"], g["ref_codes"], None, g["refer_spec"], g["ref_mel"])
    v4voc = load_vocoder(golden_path("vocoder_v4_tiny.pth"))
    with pytest.raises(ValueError, match="v3 model but the vocoder is the v4 one"):
        s2.synthesize_chunked(g["single_codes"], g["single_phones"], *_ref(g), vocoder=v4voc, sample_steps=4)
    with pytest.raises(ValueError, match="ref_mel must be"):
        s2.decode_mel(g["single_codes"], g["single_phones"], g["ref_codes"], g["ref_phones"], g["refer_spec"],
                      g["ref_mel"][:, :80])
    with pytest.raises(ValueError, match="strip the EOS"):
        s2.decode_mel(np.full((1, 5), 1024), g["single_phones"], *_ref(g))
    with pytest.raises(ValueError, match="noise of row 0 must be"):
        s2.decode_mel(g["single_codes"], g["single_phones"], *_ref(g), sample_steps=4, noise=g["single_noise"][..., :-1])


def test_random_model_for_benchmarks(s2, g):
    from gsv_jax.inference.v3 import new_s2_v3

    r = new_s2_v3(config=s2.config.replace(version="v4"), seed=1)
    assert r.version == "v4" and r.sampling_rate == 48000 and r.default_steps == 8
    mel = r.decode_mel(g["single_codes"], g["single_phones"], *_ref(g), sample_steps=2, seed=0)
    assert mel.shape == (1, 100, 160) and np.all(np.isfinite(mel))
