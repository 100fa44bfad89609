"""Token-level streaming (the original's ``streaming_mode``, docs/server.md "Streaming"):

* :class:`ChunkCutter` - where S1's growing token sequence is cut into chunks: at a mute-like token
  (codebook-embedding cosine similarity to the mute token 486 above 0, two in a row, at least
  ``min_chunk_length`` tokens in) or, with ``fixed=True``, every ``min_chunk_length`` tokens.
* :class:`StreamDecoder` - S2's ``decode_streaming`` for one segment: the text encoder runs over all
  tokens so far, only the last ``2 (new + overlap)`` latent frames go on to flow and decoder, their
  first ``2 overlap`` frames cross-faded (sine window) with the previous chunk's latent, and the
  audio pieces are joined by the SOLA search (:func:`sola_join`).

Two deliberate differences from the original (both its bugs): a mute cut hands over exactly the
tokens before the cut (the original hands over every pending token but advances only to the cut,
so the next chunk repeats tokens), and the last chunk is SOLA-joined like the others (the
original's branch for it is unreachable, so it was appended without a cross-fade).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.inference import buckets, programs
from gsv_jax.models.s2.modules import sequence_mask
from gsv_jax.models.s2.synthesizer import SynthesizerTrn

MUTE_TOKEN = 486          # the original's mute token for every version
SPLIT_THRESHOLD = 0.0     # cosine similarity above which a token counts as mute-like (TTS.run)
CHECK_TOKENS = 2          # the rule looks at pairs of tokens, so it starts 2 tokens after the minimum
SOLA_SEARCH = 320         # samples searched for the best alignment
MIN_FRAMES = 16


def mute_similarity(codebook: np.ndarray, mute: int = MUTE_TOKEN) -> np.ndarray:
    """Cosine similarity of every codebook row to the mute token's row ``[codebook_size]``."""
    cb = np.asarray(codebook, np.float32)
    m = cb[mute]
    num = cb @ m
    den = np.maximum(np.linalg.norm(cb, axis=1) * np.linalg.norm(m), 1e-8)
    return num / den


class ChunkCutter:
    """Feeds on one row's token sequence as it grows; :meth:`feed` returns the chunks that are complete."""

    def __init__(self, min_chunk_length: int, mute_sim: np.ndarray | None):
        self.min_len = max(1, int(min_chunk_length))
        self.sim = mute_sim  # None: fixed-length chunks
        self.cut = 0          # tokens already handed over
        self.seen = 0         # tokens the rule has been evaluated at

    def feed(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Apply the original's per-step rule at every token count reached since the last call."""
        chunks = []
        for m in range(self.seen + 1, len(tokens) + 1):
            pending = tokens[self.cut:m]
            if self.sim is None:
                if len(pending) >= self.min_len:
                    chunks.append(pending.copy())
                    self.cut = m
            elif len(pending) >= self.min_len + CHECK_TOKENS:
                score = self.sim[pending] - SPLIT_THRESHOLD
                score[score < 0] = -1
                score[:-1] = score[:-1] + score[1:]  # two mute-like tokens in a row
                a = int(np.argmax(score))
                if score[a] >= 0 and a + 1 >= self.min_len:
                    chunks.append(pending[: a + 1].copy())
                    self.cut += a + 1
        self.seen = max(self.seen, len(tokens))
        return chunks

    def finish(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Chunks still complete before the end, then the rest (possibly empty) as the last chunk."""
        chunks = self.feed(tokens)
        chunks.append(np.asarray(tokens[self.cut:]).copy())
        self.cut = len(tokens)
        return chunks


def sola_join(prev: np.ndarray, new: np.ndarray, overlap: int, search: int = SOLA_SEARCH) -> np.ndarray:
    """The original's ``sola_algorithm`` for two pieces: find where ``new`` best continues the last
    ``overlap`` samples of ``prev`` (normalised cross-correlation over ``search`` offsets), cross-fade
    there with a Hann window, and return ``prev[:-overlap] + new[offset:]``."""
    if overlap <= 0 or len(prev) < overlap or len(new) < overlap:
        return np.concatenate([prev, new])
    w1 = prev[-overlap:].astype(np.float64)
    w2 = new[: overlap + search].astype(np.float64)
    corr = np.correlate(w2, w1, mode="valid")
    energy = np.convolve(w2 ** 2, np.ones(overlap), mode="valid") + 1e-8
    idx = int(np.argmax(corr / np.sqrt(energy)))
    tail = new[idx:].astype(np.float32).copy()
    n = min(overlap, len(tail))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2 * overlap) / (2 * overlap))).astype(np.float32)
    tail[:n] = window[:n] * tail[:n] + window[overlap: overlap + n] * prev[len(prev) - overlap: len(prev) - overlap + n]
    return np.concatenate([prev[:-overlap], tail])


def _to_torch_layout(params):
    """Conv kernels back to the torch layout the modules read (as the S2 engine's jitted functions do)."""
    def visit(tree):
        return {k: visit(v) if isinstance(v, dict) else
                (jnp.transpose(v, (2, 1, 0)) if k == "weight" and v.ndim == 3 else v) for k, v in tree.items()}
    return visit(params)


def _stream_core(model, params, prepared, codes, y_len, text, text_len, ge, start, keep, prev, overlap, eps,
                 noise_scale, out_len):
    from gsv_jax.models.s2.text_encoder import linear_resize

    params = _to_torch_layout(params)
    width = prev.shape[1]  # the static size of the kept window

    def run(m):
        y_mask = sequence_mask(y_len, 2 * codes.shape[1])
        text_mask = sequence_mask(text_len, text.shape[1])
        x = m.prior(m.quantized_from_codes(codes), y_mask, text, text_mask, m.text_condition(ge))
        x = jnp.pad(x, ((0, 0), (0, width), (0, 0)))  # a window starting near the end stays in range
        xs = jax.lax.dynamic_slice_in_dim(x, start, width, axis=1)
        n = jnp.arange(width, dtype=jnp.float32)[None, :, None]
        span = jnp.maximum(2.0 * overlap, 1.0)
        fade = (n < overlap)
        xs = jnp.where(fade, jnp.sin(jnp.pi * n / span) * xs + jnp.sin(jnp.pi * (n + overlap) / span) * prev, xs)
        keep_mask = sequence_mask(keep, width)
        xs = xs * keep_mask
        xr = linear_resize(xs, keep, out_len, eps.shape[1])
        mask = sequence_mask(out_len, eps.shape[1])
        m_p, logs_p = m.prior_stats(xr, mask)
        z = m.flow_reverse(m_p + eps * jnp.exp(logs_p) * noise_scale, mask, ge)
        return m.decode_wave(z, ge, mask), xs

    return model.apply({"params": params, "prepared": prepared}, method=run)


@functools.cache
def _jitted(config):
    model = SynthesizerTrn(config, weight_norm=False, spectral_convs=True)
    return programs.cached_jit(functools.partial(_stream_core, model), "s2_decode_streaming", repr(config))


class StreamDecoder:
    """One segment's streaming decode state (previous latent and audio), as the original's TTS.run
    streaming loop; :meth:`push` takes the next chunk of tokens and returns the audio ready to play."""

    def __init__(self, s2, phones: np.ndarray, specs, *, speed: float = 1.0, noise_scale: float = 0.5,
                 overlap_length: int = 2, seed: int = 0, sv_emb=None):
        self.s2, self.phones = s2, np.asarray(phones, np.int32)
        self.speed, self.noise_scale = float(speed), float(noise_scale)
        self.overlap_length = max(0, int(overlap_length))
        if s2.speaker_verification and sv_emb is None:
            raise ValueError(f"a {s2.version} model needs the speaker embedding of every reference (sv_emb)")
        # v2Pro*: each reference fused with its own embedding (sv_emb aligned with specs), then averaged
        ge = s2.ref_embedding(specs if isinstance(specs, (list, tuple)) else [specs], sv_emb)
        self.ge = ge.mean(0, keepdims=True)[:, None, :]  # several references: averaged, as decode does
        self.upsample = s2.config.hop * 2 / self.speed  # samples per token
        self.overlap_size = math.ceil(self.overlap_length * self.upsample)
        self.tokens = np.zeros((0,), np.int32)
        self.first = True
        self.last_latent = None
        self.last_audio = None
        self.rng = np.random.default_rng(seed % (1 << 32))
        self._fn = _jitted(s2.config)

    def push(self, chunk: np.ndarray, final: bool) -> np.ndarray:
        chunk = np.asarray(chunk, np.int32)
        if len(chunk) == 0:  # the sequence ended right at a cut: release the held-back tail
            tail = np.zeros(0, np.float32) if self.last_audio is None else self.last_audio[-self.overlap_size:]
            return tail if final else np.zeros(0, np.float32)
        n = len(chunk)
        self.tokens = np.concatenate([self.tokens, chunk])
        ov = self.overlap_length + (10 - n) if (not self.first and n < 10) else self.overlap_length
        audio, latent = self._decode(result_tokens=None if self.first else n + ov, overlap_tokens=ov)
        if ov > self.overlap_length:
            audio = audio[-int((self.overlap_length + n) * self.upsample):]
        if self.first:
            out = audio if final else audio[: len(audio) - self.overlap_size]
        else:
            joined = sola_join(self.last_audio, audio, self.overlap_size)
            start = len(self.last_audio) - self.overlap_size
            out = joined[start:] if final else joined[start: len(joined) - self.overlap_size]
        self.first = False
        self.last_latent, self.last_audio = latent, audio
        return out.astype(np.float32)

    def _decode(self, *, result_tokens: int | None, overlap_tokens: int):
        cfg = self.s2.config
        n_tok = len(self.tokens)
        y_len = 2 * n_tok
        keep = y_len if result_tokens is None else min(y_len, 2 * result_tokens)
        start = y_len - keep
        width = buckets.pow2(keep, 2 * MIN_FRAMES)  # coarse: each chunk's window would otherwise be a new shape
        tc = buckets.ladder(n_tok, minimum=MIN_FRAMES)
        tt = buckets.ladder(len(self.phones), minimum=MIN_FRAMES)
        codes = np.zeros((1, tc), np.int32)
        codes[0, :n_tok] = self.tokens
        text = np.zeros((1, tt), np.int32)
        text[0, : len(self.phones)] = self.phones
        hidden = cfg.hidden_channels
        prev = np.zeros((1, width, hidden), np.float32)
        L = 0
        if self.last_latent is not None and result_tokens is not None:
            L = min(2 * overlap_tokens, keep, len(self.last_latent))
            prev[0, :L] = self.last_latent[len(self.last_latent) - L:]
        out_len = keep if self.speed == 1.0 else int(keep / self.speed) + 1
        t_out = buckets.pow2(out_len, 2 * MIN_FRAMES)
        eps = np.zeros((1, t_out, cfg.inter_channels), np.float32)
        if self.noise_scale != 0:
            eps[0, :out_len] = self.rng.standard_normal((out_len, cfg.inter_channels), dtype=np.float32)
        wav, xs = self._fn(self.s2.device_params, self.s2.device_prepared, jnp.asarray(codes),
                           jnp.asarray([y_len], jnp.int32), jnp.asarray(text),
                           jnp.asarray([len(self.phones)], jnp.int32), jnp.asarray(self.ge, jnp.float32),
                           jnp.int32(start), jnp.asarray([keep], jnp.int32), jnp.asarray(prev), jnp.float32(L),
                           jnp.asarray(eps), jnp.float32(self.noise_scale), jnp.asarray([out_len], jnp.int32))
        wav = np.asarray(wav)[0, : out_len * cfg.hop].astype(np.float32)
        return wav, np.asarray(xs)[0, :keep]
