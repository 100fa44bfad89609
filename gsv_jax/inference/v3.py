"""SoVITS v3/v4 inference: ``load_s2_v3`` (full files and LoRA fine-tunes), :class:`S2V3`
(``decode_mel``, ``synthesize_chunked``, ``synthesize_batched``), ``load_vocoder``, ``vocoder_mel``
(docs/v3v4.md).

Shapes at this boundary follow the original (channels first): ``codes [1, Tc]`` (or ``[1, 1, Tc]``),
``phones [1, Tt]``, ``refer_spec [1, 1025, frames]`` (32 kHz linear spectrogram), ``ref_mel [1, 100,
frames]`` (:func:`vocoder_mel` of the reference, normalised with :func:`gsv_jax.audio.norm_spec`),
mels ``[B, 100, frames]``. Inside, every jitted program sees lengths padded up to buckets
(:func:`gsv_jax.inference.buckets.ladder`) with masks carrying the true lengths, so utterances of
similar length reuse the compiled programs; the CFM sampling loop is one program per
``(batch, bucket, sample_steps)``.
"""
from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax import audio, families
from gsv_jax.convert import s2 as s2conv
from gsv_jax.convert import v3 as conv
from gsv_jax.inference import buckets, programs
from gsv_jax.inference.s2 import padded_ssl
from gsv_jax.io.torch_io import CheckpointError
from gsv_jax.io.trees import unflatten
from gsv_jax.models.bigvgan import BigVGAN, BigVGANConfig
from gsv_jax.models.s2.modules import sequence_mask
from gsv_jax.models.s2.synthesizer_v3 import (
    SynthesizerTrnV3,
    V3ModelConfig,
    encoded_lengths,
    init_params,
    nearest_index,
)
from gsv_jax.models.vocoder_v4 import VocoderV4, VocoderV4Config

SPEC_BINS = 1025
MIN_FRAMES = 16


def bucket_length(n: int) -> int:
    return buckets.ladder(n, minimum=MIN_FRAMES)

#: per version: (T_ref, T_chunk, vocoder samples per mel frame, vocoder rate) as TTS.init_vocoder sets them
CHUNKING = {"v3": (468, 934, 256, 24000), "v4": (500, 1000, 480, 48000)}
OVERLAP_FRAMES = 12  # overlapped_len of the batched variant
SOLA_SEARCH = 320
NO_PROMPT_TEXT = ("prompt_text cannot be empty when using SoVITS v3/v4 (the original's NO_PROMPT_ERROR): give "
                  "the reference text and its phonemes (ref_phones)")


def _as_2d_int(a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] != 1:
        raise ValueError(f"{what} must be one sequence [1, T] (or [T]), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be integer ids, got {a.dtype}")
    return a.astype(np.int32)


@functools.lru_cache(maxsize=8)
def _template(cfg: V3ModelConfig):
    return programs.cached_eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0), weight_norm=True),
                                      "s2v3_template", repr(cfg))


# ----------------------------------------------------------------------------------------------
# jitted cores (shared by every model of the same architecture)

@functools.cache
def _jitted(cfg: V3ModelConfig):
    model = SynthesizerTrnV3(cfg)
    salt = repr(cfg)

    def ref(params, spec, lens):
        return model.apply({"params": params}, spec, sequence_mask(lens, spec.shape[1]),
                           method=SynthesizerTrnV3.ref_embedding)

    def encode(params, codes, y_lens, text, t_lens, ge, index, f_lens, r_lens, *, resized=0):
        resize = (y_lens, r_lens, resized) if resized else None
        return model.apply({"params": params}, codes, sequence_mask(y_lens, 2 * codes.shape[1]), text,
                           sequence_mask(t_lens, text.shape[1]), ge, index, sequence_mask(f_lens, index.shape[1]),
                           resize, method=SynthesizerTrnV3.decode_encp)

    def cfm(params, mu, noise, cond, prompt_len, lens, *, n_steps):
        mask = sequence_mask(lens, mu.shape[1])
        return model.apply({"params": params}, mu, noise, cond, prompt_len, n_steps, mask,
                           method=lambda m, *a: m.cfm.sample(*a))

    def latent(params, ssl):
        return model.apply({"params": params}, ssl, method=SynthesizerTrnV3.extract_latent)

    return (programs.cached_jit(ref, "s2v3_ref", salt), programs.cached_jit(encode, "s2v3_encode", salt, static_argnames=("resized",)),
            programs.cached_jit(cfm, "s2v3_cfm", salt, static_argnames=("n_steps",)),
            programs.cached_jit(latent, "s2v3_latent", salt))


class S2V3:
    """A loaded SoVITS v3/v4 model. ``params``: the tree with ``wns1`` weight norm as ``(weight_g,
    weight_v)`` (training form); inference uses a copy with weight norm folded once."""

    def __init__(self, config: V3ModelConfig, params: dict, *, buffers=None, hparams=None, info=None,
                 key_order=None, lora: dict | None = None):
        self.config = config
        self.params = params
        self.buffers = buffers or {}
        self.hparams = hparams
        self.info = info
        self.key_order = key_order
        self.lora = lora  # {"rank", "file"} when this model came from a LoRA fine-tune (merged)
        self._device_params = None
        # the programs do not depend on the version (the up-sampling index map is an input): v3 and v4
        # models of one architecture share them
        self._jit_ref, self._jit_encode, self._jit_cfm, self._jit_latent = _jitted(config.replace(version="v3"))
        self.T_ref, self.T_chunk, self.upsample_rate, self.vocoder_sr = CHUNKING[config.version]

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def sampling_rate(self) -> int:
        """Rate of the synthesised audio (the vocoder's)."""
        return self.vocoder_sr

    @property
    def default_steps(self) -> int:
        return families.family(self.version).sample_steps

    @property
    def speaker_verification(self) -> bool:
        """v3/v4 take no speaker embedding (as :attr:`gsv_jax.inference.s2.S2.speaker_verification`)."""
        return False

    @property
    def device_params(self):
        if self._device_params is None:
            self._device_params = jax.tree_util.tree_map(jnp.asarray, s2conv.fold_weight_norm(self.params))
        return self._device_params

    def model_apply(self, fn, *args):
        """``fn(module, *args)`` on the bound ``SynthesizerTrnV3`` with the inference parameters (jitted;
        for inspection and tests)."""
        model = SynthesizerTrnV3(self.config)
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=fn))(self.device_params, *args)

    # --- encoder --------------------------------------------------------------------------------
    def extract_latent(self, ssl) -> np.ndarray:
        """HuBERT features ``[B, 768, T]`` (50 Hz) -> semantic codes ``int32 [B, T // 2]`` (the prompt
        tokens of a reference; the same ``ssl_proj`` + quantizer as v2)."""
        x, T = padded_ssl(ssl, self.config.ssl_dim)
        codes = np.asarray(self._jit_latent(self.device_params, jnp.asarray(x)))
        return codes[:, : T // 2].astype(np.int32)

    def ref_embedding(self, refer_spec) -> jax.Array:
        """``refer_spec [1, 1025, frames]`` -> ``ge [1, 1, gin]`` (device array)."""
        s = np.asarray(refer_spec, np.float32)
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3 or s.shape[0] != 1 or s.shape[1] != SPEC_BINS or s.shape[2] < 1:
            raise ValueError(f"refer_spec must be one linear spectrogram [1, {SPEC_BINS}, frames >= 1] "
                             f"(gsv_jax.spectrogram of the 32 kHz reference), got shape {s.shape}")
        n = s.shape[2]
        x = np.zeros((1, bucket_length(n), SPEC_BINS), np.float32)
        x[0, :n] = s[0].T
        return self._jit_ref(self.device_params, jnp.asarray(x), jnp.asarray([n], jnp.int32))

    def encode(self, codes, phones, ge, speed: float = 1.0, *, with_x: bool = False):
        """``decode_encp``: codes + phonemes -> ``fea [model_dim, frames]`` (numpy, channels first);
        ``speed`` != 1 resizes the 50 Hz features to ``int(2 Tc / speed) + 1`` frames first."""
        c = self.config
        codes = _as_2d_int(codes, "codes")
        phones = _as_2d_int(phones, "phones")
        Tc, Tt = codes.shape[1], phones.shape[1]
        if Tc < 1 or Tt < 1:
            raise ValueError(f"empty input: {Tc} codes, {Tt} phonemes (give at least one of each)")
        if codes.min() < 0 or codes.max() >= c.codebook_bins:
            raise ValueError(f"semantic codes must be in 0..{c.codebook_bins - 1}, found {codes.min()}..{codes.max()}"
                             " (strip the EOS token 1024 first)")
        if phones.min() < 0 or phones.max() >= c.n_symbols:
            raise ValueError(f"phoneme ids must be in 0..{c.n_symbols - 1}, found {phones.min()}..{phones.max()}")
        speed = float(speed)
        if not 0.2 <= speed <= 5:
            raise ValueError(f"speed must be in 0.2..5 (1 = normal), got {speed}")
        Tcb, Ttb = bucket_length(Tc), bucket_length(Tt)
        Ty, Tf, keep = encoded_lengths(Tc, self.version, speed)
        idx = nearest_index(Ty, c.upsample)
        Tyb = 0 if speed == 1 else bucket_length(Ty)
        # room for v4's x2 (>= v3's x1.875): v3 and v4 models then share the encoder programs too
        Tfb = 2 * max(2 * Tcb, Tyb)
        cp = np.zeros((1, Tcb), np.int32)
        cp[0, :Tc] = codes[0]
        tp = np.zeros((1, Ttb), np.int32)
        tp[0, :Tt] = phones[0]
        ip = np.zeros((1, Tfb), np.int32)
        ip[0, :Tf] = idx
        fea, x = self._jit_encode(self.device_params, jnp.asarray(cp), jnp.asarray([2 * Tc], jnp.int32),
                                  jnp.asarray(tp), jnp.asarray([Tt], jnp.int32), ge, jnp.asarray(ip),
                                  jnp.asarray([keep], jnp.int32), jnp.asarray([Ty], jnp.int32), resized=Tyb)
        fea = np.asarray(fea)[0, :Tf].T
        return (fea, np.asarray(x)[0, : 2 * Tc].T) if with_x else fea

    def prompt(self, ref_codes, ref_phones, refer_spec, ref_mel):
        """``(ge, fea_ref [C, T_min], mel2 [100, T_min])`` as ``using_vocoder_synthesis`` trims them:
        both cut to their first ``T_min = min`` frames, then to their last ``T_ref`` if longer."""
        if ref_phones is None or np.size(ref_phones) == 0:
            raise ValueError(NO_PROMPT_TEXT)
        mel = np.asarray(ref_mel, np.float32)
        if mel.ndim == 2:
            mel = mel[None]
        if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[1] != self.config.mel_dim:
            raise ValueError(f"ref_mel must be [1, {self.config.mel_dim}, frames]: vocoder_mel(reference, "
                             f"{self.version!r}) normalised with norm_spec; got shape {mel.shape}")
        ge = self.ref_embedding(refer_spec)
        fea_ref = self.encode(ref_codes, ref_phones, ge)
        t_min = min(mel.shape[2], fea_ref.shape[1])
        mel2, fea_ref = mel[0, :, :t_min], fea_ref[:, :t_min]
        if t_min > self.T_ref:
            mel2, fea_ref = mel2[:, -self.T_ref:], fea_ref[:, -self.T_ref:]
        return ge, fea_ref, mel2

    # --- CFM ------------------------------------------------------------------------------------
    def cfm(self, fea_refs, mel2s, chunks, sample_steps: int, noises=None, seed=None) -> list:
        """One batched ``CFM.inference`` call: row b samples ``[fea_refs[b]; chunks[b]]`` with prompt
        ``mel2s[b]`` (normalised). ``noises[b] [100, P_b + L_b]`` standard normal (drawn from ``seed`` if
        None). Returns the generated (normalised) mels ``[100, L_b]`` after each row's prompt."""
        c = self.config
        B = len(chunks)
        P = [m.shape[1] for m in mel2s]
        L = [ch.shape[1] for ch in chunks]
        T = [p + n for p, n in zip(P, L)]
        Tb = bucket_length(max(T))
        mu = np.zeros((B, Tb, c.model_dim), np.float32)
        cond = np.zeros((B, Tb, c.mel_dim), np.float32)
        x0 = np.zeros((B, Tb, c.mel_dim), np.float32)
        rng = np.random.default_rng(seed) if noises is None else None
        for b in range(B):
            if fea_refs[b].shape[1] != P[b]:
                raise ValueError(f"row {b}: prompt features ({fea_refs[b].shape[1]}) and prompt mel ({P[b]}) differ")
            mu[b, : T[b]] = np.concatenate([fea_refs[b], chunks[b]], 1).T
            cond[b, : P[b]] = mel2s[b].T
            if noises is None:
                x0[b, : T[b]] = rng.standard_normal((T[b], c.mel_dim), dtype=np.float32)
            else:
                n = np.asarray(noises[b], np.float32)
                if n.ndim == 3:
                    n = n[0]
                if n.shape != (c.mel_dim, T[b]):
                    raise ValueError(f"noise of row {b} must be [{c.mel_dim}, {T[b]}] (prompt {P[b]} + target "
                                     f"{L[b]} frames), got {n.shape}")
                x0[b, : T[b]] = n.T
        steps = int(sample_steps)
        if steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {sample_steps}")
        out = np.asarray(self._jit_cfm(self.device_params, jnp.asarray(mu), jnp.asarray(x0), jnp.asarray(cond),
                                       jnp.asarray(P, jnp.int32), jnp.asarray(T, jnp.int32), n_steps=steps))
        return [out[b, P[b]: T[b]].T for b in range(B)]

    # --- public synthesis -------------------------------------------------------------------------
    def decode_mel(self, codes, phones, ref_codes, ref_phones, refer_spec, ref_mel, sample_steps: int | None = None,
                   noise=None, *, speed: float = 1.0, seed: int | None = None) -> np.ndarray:
        """One CFM pass (= one chunk of the original's ``using_vocoder_synthesis``): the denormalised
        mel ``[1, 100, frames]`` of the target (the vocoder's input). ``noise``: the start noise
        ``[1, 100, T_prompt + T_target]`` for parity. Targets longer than one chunk: :meth:`synthesize_chunked`."""
        ge, fea_ref, mel2 = self.prompt(ref_codes, ref_phones, refer_spec, ref_mel)
        fea = self.encode(codes, phones, ge, speed)
        chunk_len = self.T_chunk - mel2.shape[1]
        if fea.shape[1] > chunk_len:
            raise ValueError(f"target of {fea.shape[1]} mel frames is longer than one chunk ({chunk_len} with this "
                             "prompt); use synthesize_chunked")
        steps = self.default_steps if sample_steps is None else sample_steps
        mel = self.cfm([fea_ref], [mel2], [fea], steps, None if noise is None else [noise], seed)[0]
        return np.asarray(audio.denorm_spec(mel))[None]

    def _check_vocoder(self, vocoder):
        if vocoder is None:
            raise ValueError(f"a vocoder is needed: load_vocoder({conv.VOCODER_FILES[self.version]!r})")
        if getattr(vocoder, "version", None) != self.version:
            raise ValueError(f"this is a SoVITS {self.version} model but the vocoder is the {vocoder.version} one "
                             f"({vocoder.sampling_rate} Hz); {self.version} needs {conv.VOCODER_FILES[self.version]}")

    def synthesize_chunked(self, codes, phones, ref_codes, ref_phones, refer_spec, ref_mel, *, vocoder,
                           sample_steps: int | None = None, noises=None, speed: float = 1.0,
                           seed: int | None = None, return_mel: bool = False):
        """The original's ``using_vocoder_synthesis``: the target cut into ``T_chunk - T_min`` frame
        chunks, each sampled with the previous chunk's last ``T_min`` frames as its prompt, mels
        concatenated, one vocoder call. ``noises``: one start noise per chunk. Returns the waveform ``[N]``."""
        self._check_vocoder(vocoder)
        steps = self.default_steps if sample_steps is None else sample_steps
        ge, fea_ref, mel2 = self.prompt(ref_codes, ref_phones, refer_spec, ref_mel)
        t_min = mel2.shape[1]
        chunk_len = self.T_chunk - t_min
        fea = self.encode(codes, phones, ge, speed)
        n_chunks = -(-fea.shape[1] // chunk_len)
        if noises is not None and len(noises) != n_chunks:
            raise ValueError(f"the target needs {n_chunks} chunks; give that many noises (got {len(noises)})")
        mels = []
        for k in range(n_chunks):
            chunk = fea[:, k * chunk_len: (k + 1) * chunk_len]
            out = self.cfm([fea_ref], [mel2], [chunk], steps, None if noises is None else [noises[k]],
                           None if seed is None else seed + k)[0]
            mel2, fea_ref = out[:, -t_min:], chunk[:, -t_min:]
            mels.append(out)
        mel = np.asarray(audio.denorm_spec(np.concatenate(mels, 1)))[None]
        wav = vocoder(mel)[0]
        return (wav, mel) if return_mel else wav

    def synthesize_batched(self, codes_list, phones_list, ref_codes, ref_phones, refer_spec, ref_mel, *, vocoder,
                           sample_steps: int | None = None, noise=None, speed: float = 1.0,
                           seed: int | None = None, return_details: bool = False):
        """The original's ``using_vocoder_synthesis_batched_infer``: every segment's features joined,
        12 zero frames in front, overlapping ``chunk_len`` chunks (overlap 12) sampled as ONE CFM batch
        with the same prompt, mels joined, one vocoder call, chunks re-joined with SOLA, the audio split
        per segment. ``noise [chunks, 100, T_prompt + chunk_len]``. Returns one waveform per segment."""
        self._check_vocoder(vocoder)
        if len(codes_list) != len(phones_list) or not codes_list:
            raise ValueError("give one phoneme sequence per code sequence (and at least one segment)")
        steps = self.default_steps if sample_steps is None else sample_steps
        ge, fea_ref, mel2 = self.prompt(ref_codes, ref_phones, refer_spec, ref_mel)
        chunk_len = self.T_chunk - mel2.shape[1]
        ov, U = OVERLAP_FRAMES, self.upsample_rate
        feats = [self.encode(c, p, ge, speed) for c, p in zip(codes_list, phones_list)]
        lens = [f.shape[1] for f in feats]
        padded = np.pad(np.concatenate(feats, 1), ((0, 0), (ov, 0)))
        chunks, pos, padding_len = [], 0, 0
        while True:  # the original's loop, including where it stops
            if pos != 0:
                pos -= ov
            chunk = padded[:, pos: pos + chunk_len]
            pos += chunk_len
            if chunk.shape[1] == 0:
                break
            padding_len = chunk_len - chunk.shape[1]
            chunks.append(np.pad(chunk, ((0, 0), (0, padding_len))))
        n = len(chunks)
        if noise is not None:
            noise = np.asarray(noise, np.float32)
            if noise.ndim != 3 or noise.shape[0] != n:
                raise ValueError(f"noise must be [{n} chunks, 100, {mel2.shape[1] + chunk_len}], got {noise.shape}")
        mels = self.cfm([fea_ref] * n, [mel2] * n, chunks, steps, None if noise is None else list(noise), seed)
        mel = np.asarray(audio.denorm_spec(np.concatenate(mels, 1)))[None]
        wav = vocoder(mel)[0]
        frags = [wav[p: p + chunk_len * U] for p in range(0, wav.shape[0], chunk_len * U)]
        joined, shifts = sola(frags, ov * U)
        joined = joined[ov * U: joined.shape[0] - padding_len * U] if padding_len > 0 else joined[ov * U:]
        out, start = [], 0
        for n_frames in lens:
            out.append(joined[start: start + n_frames * U])
            start += n_frames * U
        if return_details:
            return out, {"mel": mel, "sola_shifts": shifts, "chunks": n}
        return out

    def synthesize_rows(self, rows, *, vocoder, sample_steps: int | None = None, speed: float = 1.0,
                        seeds=None, return_mels: bool = False) -> list:
        """Several segments, each exactly as :meth:`synthesize_chunked` makes it alone, in padded
        batches: chunk k of every segment that has one is ONE CFM call (rows padded to
        :func:`buckets.batch` with copies), then ONE vocoder call for all segments. ``rows``: ``(codes,
        phones, prompt)`` with ``prompt = self.prompt(...)`` (segments may have different references).
        Chunk k of segment i starts from ``chunk_noise(seeds[i], k, ...)``, so a segment gives the same
        audio alone or in any batch (masks make the padding exact). Returns one waveform per segment."""
        self._check_vocoder(vocoder)
        if not rows:
            return []
        steps = self.default_steps if sample_steps is None else sample_steps
        seeds = list(range(len(rows))) if seeds is None else [int(x) for x in seeds]
        if len(seeds) != len(rows):
            raise ValueError(f"give one seed per segment ({len(rows)}), got {len(seeds)}")
        state = []
        for codes, phones, prompt in rows:
            if prompt is None:
                raise ValueError(NO_PROMPT_TEXT)
            ge, fea_ref, mel2 = prompt
            fea = self.encode(codes, phones, ge, speed)
            L = self.T_chunk - mel2.shape[1]
            state.append({"fea": fea, "ref": fea_ref, "mel2": mel2, "L": L, "n": -(-fea.shape[1] // L), "out": []})
        for k in range(max(s["n"] for s in state)):
            live = [i for i, s in enumerate(state) if s["n"] > k]
            picked = live + [live[0]] * (buckets.batch(len(live)) - len(live))
            chunks = [state[i]["fea"][:, k * state[i]["L"]: (k + 1) * state[i]["L"]] for i in picked]
            noises = [chunk_noise(seeds[i], k, state[i]["mel2"].shape[1] + ch.shape[1], self.config.mel_dim)
                      for i, ch in zip(picked, chunks)]
            outs = self.cfm([state[i]["ref"] for i in picked], [state[i]["mel2"] for i in picked], chunks, steps,
                            noises)
            for i, chunk, out in zip(live, chunks, outs):  # the original's hand-over to the next chunk
                s = state[i]
                t_min = s["mel2"].shape[1]
                s["mel2"], s["ref"] = out[:, -t_min:], chunk[:, -t_min:]
                s["out"].append(out)
        mels = [np.asarray(audio.denorm_spec(np.concatenate(s["out"], 1))) for s in state]
        lens = [m.shape[1] for m in mels]
        B = buckets.batch(len(mels))
        batch = np.zeros((B, self.config.mel_dim, max(lens)), np.float32)
        for b in range(B):
            m = mels[b if b < len(mels) else 0]
            batch[b, :, : m.shape[1]] = m
        lengths = [lens[b if b < len(mels) else 0] for b in range(B)]
        wav = vocoder(batch, lengths)
        wavs = [wav[b, : n * vocoder.hop] for b, n in enumerate(lens)]
        return (wavs, mels) if return_mels else wavs

    # --- export -----------------------------------------------------------------------------------
    def state_dict(self, *, dtype=np.float16) -> dict:
        """The original's state dict (``wns1`` weight norm as ``weight_g/weight_v``; fp16 as ``savee`` writes)."""
        return conv.params_to_state_dict(self.params, buffers=self.buffers, dtype=dtype, key_order=self.key_order)


def chunk_noise(seed: int, chunk: int, frames: int, mel_dim: int = 100) -> np.ndarray:
    """The start noise ``[mel_dim, frames]`` (prompt + chunk frames) of chunk ``chunk`` of a segment
    sampled with ``seed`` (:meth:`S2V3.synthesize_rows`): standard normal from ``default_rng([seed, chunk])``,
    independent of the batch the segment is in."""
    rng = np.random.default_rng([int(seed) % (1 << 32), int(chunk)])
    return rng.standard_normal((mel_dim, int(frames)), dtype=np.float32)


def sola(fragments: list, overlap: int, search: int = SOLA_SEARCH):
    """The original's ``sola_algorithm``: for each boundary find the shift of the next fragment that
    best matches the previous one's last ``overlap`` samples (normalised cross-correlation over
    ``overlap + search`` samples), drop that tail, cross-fade with a periodic Hann window. Returns
    ``(joined waveform, shifts)``."""
    frags = [np.asarray(f, np.float32).copy() for f in fragments]
    w = audio.hann_window(2 * overlap)
    shifts = []
    for i in range(len(frags) - 1):
        f1, f2 = frags[i], frags[i + 1]
        w1 = f1[-overlap:].astype(np.float64)
        w2 = f2[: overlap + search].astype(np.float64)
        num = np.correlate(w2, w1, mode="valid")
        den = np.correlate(w2 * w2, np.ones(overlap), mode="valid") + 1e-8
        idx = int(np.argmax(num / np.sqrt(den)))
        shifts.append(idx)
        frags[i] = f1[:-overlap]
        f2_ = f2[idx:].copy()
        f2_[:overlap] = w[:overlap] * f2_[:overlap] + w[overlap:] * f1[-overlap:]
        frags[i + 1] = f2_
    return np.concatenate(frags), shifts


# ----------------------------------------------------------------------------------------------
# vocoders

class Vocoder:
    """A loaded vocoder: ``voc(mel [B, 100, frames]) -> waveform [B, frames · hop]`` (numpy float32;
    mels denormalised, as the CFM output after :func:`gsv_jax.audio.denorm_spec`)."""

    def __init__(self, version: str, module, params: dict, source: str = ""):
        self.version = version
        self.module = module
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.hop = module.config.hop
        self.sampling_rate = module.config.sampling_rate
        self.source = source
        self._jit = _vocoder_program(version, type(module), module.config)

    def __call__(self, mel, lengths=None) -> np.ndarray:
        m = np.asarray(mel, np.float32)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3 or m.shape[1] != 100:
            raise ValueError(f"vocoder input must be a mel [B, 100, frames], got shape {m.shape}")
        B, _, T = m.shape
        lens = np.full((B,), T) if lengths is None else np.asarray(lengths).reshape(-1)
        Tb = bucket_length(T)
        x = np.zeros((B, Tb, 100), np.float32)
        x[:, :T] = m.transpose(0, 2, 1)
        wav = np.asarray(self._jit(self.params, jnp.asarray(x), jnp.asarray(lens, jnp.int32)))
        return wav[:, : T * self.hop]


@functools.cache
def _vocoder_program(version: str, cls, config):
    """One jitted program per vocoder architecture: every loaded vocoder of it (a second TTS, a weights
    switch) reuses the compiled executables instead of compiling its own. BigVGAN runs its wide AMP convs
    in the frequency domain (~11 % less vocoder time at full size on a 2-core CPU, 1e-5 from the direct convs)."""
    spectral = cls is BigVGAN
    module = cls(config, spectral_convs=True) if spectral else cls(config)
    return programs.cached_jit(lambda p, m, n: module.apply({"params": p}, m, n), f"vocoder_{version}",
                               f"{config!r} spectral_convs={spectral}")


def _tree(sd: dict) -> dict:
    return unflatten({conv.key_to_path(k): np.asarray(v, np.float32) for k, v in sd.items()})


def _check_vocoder_tree(module, params, where):
    import flax.linen as nn

    from gsv_jax.io.trees import flatten

    expect = nn.meta.unbox(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 100))))["params"])
    fe, fp = flatten(expect), flatten(params)
    missing, extra = sorted(set(fe) - set(fp)), sorted(set(fp) - set(fe))
    bad = [k for k in set(fe) & set(fp) if tuple(fe[k].shape) != tuple(fp[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(f"{where}: the weights do not fit the vocoder: missing {[conv.path_to_key(k) for k in missing[:4]]}, "
                              f"unexpected {[conv.path_to_key(k) for k in extra[:4]]}, shapes differ {bad[:3]}")


def load_vocoder(path) -> Vocoder:
    """The v3 BigVGAN folder (``config.json`` + ``bigvgan_generator.pt``) or the v4 ``vocoder.pth``."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"vocoder not found: {path} (v3: the folder {conv.VOCODER_FILES['v3']}, v4: "
                                f"{conv.VOCODER_FILES['v4']})")
    if path.is_dir():
        cfg, sd = conv.read_bigvgan(path)
        module = BigVGAN(BigVGANConfig.from_json(cfg))
        version = "v3"
    else:
        sd = conv.read_vocoder_v4(path)
        module = VocoderV4(VocoderV4Config(upsample_initial_channel=int(sd["conv_pre.weight"].shape[0])))
        version = "v4"
    params = _tree(sd)
    _check_vocoder_tree(module, params, str(path))
    return Vocoder(version, module, params, str(path))


def vocoder_mel(wav, version: str) -> np.ndarray:
    """``TTS.py``'s mel of a waveform for ``version`` (v3: 24 kHz audio, v4: 32 kHz): ``[1, 100, frames]``,
    log, not normalised."""
    w = np.asarray(wav, np.float32)
    if w.ndim == 1:
        w = w[None]
    return np.asarray(audio.vocoder_mel(w, version))


#: the rate of the reference audio for the CFM prompt mel
MEL_SAMPLE_RATE = {"v3": 24000, "v4": 32000}


def reference_mel(wav, sr: int, version: str) -> np.ndarray:
    """The CFM prompt as ``using_vocoder_synthesis`` prepares it from the raw reference audio
    (``[N]`` or ``[channels, N]`` at ``sr``): channels averaged, torchaudio-style resampling to 24 kHz
    (v3) / 32 kHz (v4), no peak normalisation, :func:`vocoder_mel`, ``norm_spec``: ``[1, 100, frames]``."""
    if version not in MEL_SAMPLE_RATE:
        raise ValueError(f"reference_mel: version must be 'v3' or 'v4', got {version!r}")
    w = np.asarray(wav, np.float32)
    if w.ndim == 2:
        w = w.mean(0)
    if w.ndim != 1:
        raise ValueError(f"reference audio must be [N] or [channels, N], got shape {np.shape(wav)}")
    w = audio.resample_sinc(w, int(sr), MEL_SAMPLE_RATE[version])
    return np.asarray(audio.norm_spec(vocoder_mel(w, version)))


# ----------------------------------------------------------------------------------------------
# loading / saving

def load_s2_v3(path, base=None) -> S2V3:
    """Load a SoVITS v3/v4 file (``s2Gv3.pth``, ``s2Gv4.pth``, a fine-tuned export) or a LoRA
    fine-tune merged onto ``base`` (its full model)."""
    path = pathlib.Path(path)
    sd, hps, meta = conv.read_v3_file(path)
    version = meta["version"]
    lora = None
    if meta["lora"]:
        if base is None:
            raise conv.LoraBaseError(
                f"{path} is a SoVITS {version} LoRA fine-tune: load it with its base model, "
                f"load_s2(..., base='{conv.BASE_FILES[version]}') (the original's pretrained_models/"
                f"{conv.BASE_FILES[version]})")
        base_sd, base_hps, base_meta = conv.read_v3_file(base)
        if base_meta["lora"]:
            raise conv.LoraBaseError(f"base {base} is itself a LoRA file; give the full {version} model "
                                     f"({conv.BASE_FILES[version]})")
        if base_meta["version"] != version:
            raise conv.LoraBaseError(f"{path} is a {version} LoRA but {base} is a {base_meta['version']} model; "
                                     f"its base is {conv.BASE_FILES[version]}")
        rank = meta["lora_rank"]
        if rank is None:
            raise CheckpointError(f"{path}: a LoRA file without 'lora_rank'")
        sd = conv.merge_lora(base_sd, sd, int(rank))
        hps = base_hps if hps is None else hps
        lora = {"rank": int(rank), "file": str(path), "base": str(base)}
    elif base is not None:
        raise ValueError(f"{path} is a full {version} model; base= is only for LoRA fine-tunes")
    cfg = V3ModelConfig(**conv.config_from_state_dict(sd, hps, version))
    params, buffers = conv.state_dict_to_params(sd, _template(cfg), where=str(path))
    return S2V3(cfg, params, buffers=buffers, hparams=hps, info=meta.get("info"), key_order=list(sd), lora=lora)


def save_s2_v3_torch(s2: S2V3, path, *, info: str | None = None) -> None:
    """Export as the original's full-model file (``savee``: fp16, plain zip, pickled ``HParams``);
    a merged LoRA model is written as a full model (LoRA files themselves are read only)."""
    hps = s2.hparams if s2.hparams is not None else conv.make_hparams(s2.config.to_dict(), s2.version)
    conv.write_v3_export(path, s2.state_dict(), hps, info=info or s2.info or "gsv_jax export", version=s2.version)


# ----------------------------------------------------------------------------------------------
# random models (benchmarks)

def _random_tree(template: dict, rng) -> dict:
    """Numpy draws of the right scale for every leaf (no XLA compile of the initialisers)."""
    from gsv_jax.io.trees import flatten

    flat = {}
    for path, leaf in flatten(template).items():
        shape, name = tuple(leaf.shape), path[-1]
        if name in ("bias", "beta"):
            v = np.zeros(shape, np.float32)
        elif name in ("gamma", "weight_g") or (name == "weight" and len(shape) == 1):
            v = np.ones(shape, np.float32)
        elif name == "inv_freq":
            v = (1.0 / 10000 ** (np.arange(0, 2 * shape[0], 2) / (2 * shape[0]))).astype(np.float32)
        elif name == "filter":
            v = np.kaiser(shape[-1], 4.66).astype(np.float32).reshape(shape)
            v /= v.sum()
        elif name in ("alpha",):
            v = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            v = (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)
        flat[path] = v
    return unflatten(flat)


def new_s2_v3(version: str = "v4", seed: int = 0, config: V3ModelConfig | None = None) -> S2V3:
    """A full-size (or ``config``-sized) model with random weights."""
    cfg = config or V3ModelConfig(version=version)
    return S2V3(cfg, _random_tree(_template(cfg), np.random.default_rng(seed)))


def new_vocoder(version: str = "v4", seed: int = 0) -> Vocoder:
    """The official-size vocoder of ``version`` with random weights."""
    import flax.linen as nn

    module = BigVGAN(BigVGANConfig()) if version == "v3" else VocoderV4(VocoderV4Config())
    shapes = nn.meta.unbox(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 100))))["params"])
    return Vocoder(version, module, _random_tree(shapes, np.random.default_rng(seed)), "random")
