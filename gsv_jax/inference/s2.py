"""Public S2 (SoVITS) API: ``load_s2``, :class:`S2` (``extract_latent``, ``decode``), ``save_s2_torch``.

v2Pro / v2ProPlus models fuse every reference's speaker-verification embedding into ``ge``
(``decode(..., sv_emb=...)``, one ``[1, 20480]`` per reference; docs/s2.md, "v2Pro and v2ProPlus").

Shapes at this boundary follow the original (channels first): ``ssl [B, 768, T]``,
``spec [B, 1025, frames]``, ``noise [B, inter, frames']``. Inside, the jitted functions see lengths
padded up to buckets (``buckets.ladder``, at least 16 frames) with masks carrying the true lengths,
so a steady stream of requests compiles a handful of shapes once.
"""
from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax import families
from gsv_jax.convert import s2 as conv
from gsv_jax.inference import buckets, programs
from gsv_jax.io.torch_io import CheckpointError, HParams
from gsv_jax.io.trees import flatten, unflatten
from gsv_jax.models.s2.generator import prepare_generator
from gsv_jax.models.s2.modules import sequence_mask
from gsv_jax.models.s2.synthesizer import S2ModelConfig, SynthesizerTrn, init_params

SAMPLE_RATE = families.SOVITS_SAMPLE_RATE  # the VITS families' output rate
SPEC_BINS = 1025
MIN_FRAMES = 16  # the smallest padded length of every S2 sequence


def padded_ssl(ssl, ssl_dim: int) -> tuple[np.ndarray, int]:
    """HuBERT features ``[B, ssl_dim, T]`` (or ``[ssl_dim, T]``), checked, as the time-major
    ``[B, Tp, ssl_dim]`` input of ``extract_latent`` at a bucketed even length; returns (x, T)."""
    ssl = np.asarray(ssl, np.float32)
    if ssl.ndim == 2:
        ssl = ssl[None]
    if ssl.ndim != 3 or ssl.shape[1] != ssl_dim:
        raise ValueError(f"ssl must be [B, {ssl_dim}, T] HuBERT features, got shape {ssl.shape}")
    T = ssl.shape[2]
    if T < 2:
        raise ValueError(f"ssl has {T} frame(s); at least 2 (one 25 Hz code) are needed")
    x = np.zeros((ssl.shape[0], 2 * buckets.ladder(T // 2, minimum=MIN_FRAMES), ssl_dim), np.float32)
    x[:, :T] = ssl.transpose(0, 2, 1)
    return x, T
OWN_CONFIG = "s2_config.json"
OWN_PARAMS = "s2_params.npz"


@functools.lru_cache(maxsize=8)
def _template(cfg: S2ModelConfig, with_enc_q: bool):
    return programs.cached_eval_shape(
        lambda: init_params(cfg, jax.random.PRNGKey(0), weight_norm=True, with_enc_q=with_enc_q),
        "s2_template", f"{cfg!r} enc_q={with_enc_q}")


def _wn_layers(cfg: S2ModelConfig) -> set:
    flat = flatten(_template(cfg, True))
    return {conv.path_to_torch_key(p[:-1]) for p in flat if p[-1] == "weight_g"}


class S2:
    """A loaded SoVITS model (v1 / v2 / v2Pro / v2ProPlus).

    ``params``: the parameter tree with weight norm as ``(weight_g, weight_v)`` (training form;
    includes ``enc_q`` when the file had it). Inference uses a copy with weight norm folded once.
    """

    def __init__(self, config: S2ModelConfig, params: dict, *, buffers: dict | None = None, hparams=None,
                 info: str | None = None, key_order: list | None = None):
        self.config = config
        self.params = params
        self.buffers = buffers or {}
        self.hparams = hparams
        self.info = info
        self.key_order = key_order  # state-dict order of the source file (kept on export)
        self._infer_params = None
        self._device_params = None
        self._device_prepared = None
        self.model = SynthesizerTrn(config, weight_norm=False, spectral_convs=True)
        self._jit_latent, self._jit_ref, self._jit_decode = _jitted(config)

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def sampling_rate(self) -> int:
        return families.family(self.version).sample_rate

    @property
    def family(self) -> families.Family:
        return families.family(self.version)

    @property
    def speaker_verification(self) -> bool:
        """Whether :meth:`decode` needs ``sv_emb`` (the speaker embedding of each reference; v2Pro*)."""
        return self.config.speaker_verification

    @property
    def infer_params(self):
        if self._infer_params is None:
            p = {k: v for k, v in self.params.items() if k != "enc_q"}
            self._infer_params = jax.tree_util.tree_map(jnp.asarray, conv.fold_weight_norm(p))
        return self._infer_params

    @property
    def device_params(self):
        """:attr:`infer_params` with every conv kernel stored as ``[k, in, out]`` (see
        :func:`_kernels_to_torch_layout`), as the jitted functions take them."""
        if self._device_params is None:
            self._device_params = _map_kernels(self.infer_params, lambda w: jnp.asarray(np.asarray(w).transpose(2, 1, 0)))
        return self._device_params

    @property
    def device_prepared(self):
        """Per-model constants the decode program reads (``Generator``'s ``prepared`` collection)."""
        if self._device_prepared is None:
            c = self.config
            self._device_prepared = {"dec": prepare_generator(self.device_params["dec"], c.upsample_rates,
                                                              c.upsample_kernel_sizes)}
        return self._device_prepared

    # ------------------------------------------------------------------------------------------
    def extract_latent(self, ssl) -> np.ndarray:
        """HuBERT features ``[B, 768, T]`` (50 Hz) -> semantic codes ``int32 [B, T // 2]``."""
        x, T = padded_ssl(ssl, self.config.ssl_dim)
        codes = self._jit_latent(self.device_params, jnp.asarray(x))
        return np.asarray(codes)[:, : T // 2]

    def ref_embedding(self, spec, sv_emb=None) -> np.ndarray:
        """Reference spectrogram(s) -> ``ge [R, gin]``: one row per reference (each at its true length).

        v2Pro*: with ``sv_emb`` (one embedding per reference, see :meth:`decode`) each row is the fused
        ``prelu(ge + sv_emb(sv))`` that flow and decoder see (before averaging); without it, the
        reference encoder's own output."""
        specs = self._as_spec_list(spec)
        svs = self._as_sv_list(sv_emb, len(specs))
        ges = []
        for s, sv in zip(specs, svs):  # one at a time: few shapes to compile, the encoder is cheap
            n = s.shape[-1]
            x = np.zeros((1, buckets.ladder(n, minimum=MIN_FRAMES), SPEC_BINS), np.float32)
            x[0, :n] = s.T
            sv = None if sv is None else jnp.asarray(sv)
            ges.append(np.asarray(self._jit_ref(self.device_params, jnp.asarray(x), jnp.asarray([n], jnp.int32),
                                                sv))[0, 0])
        return np.stack(ges)

    def _as_sv_list(self, sv_emb, n: int) -> list:
        """``sv_emb`` -> ``n`` arrays ``[1, sv_dim]`` (one per reference / spec row) or ``n`` Nones."""
        if sv_emb is None:
            return [None] * n
        if not self.speaker_verification:
            raise ValueError(f"sv_emb is only used by v2Pro/v2ProPlus models; this is a {self.version} model: "
                             "leave sv_emb out")
        dim = self.config.sv_dim
        if isinstance(sv_emb, (list, tuple)):
            items = [np.asarray(e, np.float32) for e in sv_emb]
        else:
            a = np.asarray(sv_emb, np.float32)
            items = [a] if a.ndim == 1 else list(a[:, None]) if a.ndim == 2 else [a]
        rows = []
        for i, e in enumerate(items):
            if e.ndim == 2 and e.shape[0] == 1:
                e = e[0]
            if e.ndim != 1 or e.shape[0] != dim:
                raise ValueError(f"sv_emb {i}: a speaker embedding is [{dim}] or [1, {dim}] (ERes2NetV2 of the "
                                 f"reference at 16 kHz, gsv_jax.load_sv(...).embed(wav16k)), got shape {tuple(e.shape)}")
            if not np.all(np.isfinite(e)):
                raise ValueError(f"sv_emb {i} contains NaN or inf")
            rows.append(e[None])
        if len(rows) == 1 and n > 1 and not isinstance(sv_emb, (list, tuple)):
            rows = rows * n  # one embedding shared by the spec rows (a list must match the references)
        if len(rows) != n:
            raise ValueError(f"{len(rows)} speaker embedding(s) for {n} reference(s): give one sv_emb per "
                             "reference (a list aligned with the list of spectrograms), or one per spec row")
        return rows

    def _as_spec_list(self, spec) -> list:
        """-> list of ``[1025, frames]`` arrays (one per reference / row)."""
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ValueError("spec is an empty list; give at least one reference spectrogram")
            out = []
            for i, s in enumerate(spec):
                s = np.asarray(s, np.float32)
                if s.ndim == 3:
                    if s.shape[0] != 1:
                        raise ValueError(f"reference {i} has shape {s.shape}; each list item must be [1, 1025, frames]")
                    s = s[0]
                out.append(self._check_spec(s, f"reference {i}"))
            return out
        s = np.asarray(spec, np.float32)
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3:
            raise ValueError(f"spec must be [B, 1025, frames] (or a list of [1, 1025, frames]), got shape {s.shape}")
        return [self._check_spec(x, f"spec row {i}") for i, x in enumerate(s)]

    @staticmethod
    def _check_spec(s, what):
        if s.ndim != 2 or s.shape[0] != SPEC_BINS:
            raise ValueError(
                f"{what}: a linear spectrogram needs {SPEC_BINS} frequency bins (n_fft 2048), got shape "
                f"{tuple(s.shape)}; compute it with gsv_jax.spectrogram(wav) from 32 kHz audio")
        if s.shape[1] < 1:
            raise ValueError(f"{what}: reference is shorter than one frame (640 samples at 32 kHz); "
                             "use a longer reference clip (3-10 s is typical)")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{what}: spectrogram contains NaN or inf")
        return s

    # ------------------------------------------------------------------------------------------
    def decode(self, codes, phones, spec, noise_scale: float = 0.5, speed: float = 1.0, noise=None,
               codes_lens=None, phones_lens=None, *, seed: int | None = None, sv_emb=None) -> list:
        """Semantic codes + phonemes + reference spectrogram(s) -> list of 32 kHz waveforms (float32).

        ``codes [B, Tc]`` (or the original's ``[1, B, Tc]``), ``phones [B, Tt]``; ``spec`` either
        ``[B or 1, 1025, frames]`` (one reference per row, or shared) or a list of ``[1, 1025, frames_i]``
        (several references, averaged as the original does, shared by all rows). ``noise``: the
        standard-normal draw ``[B, inter, frames']`` for parity; otherwise drawn from ``seed``.
        ``sv_emb`` (v2Pro/v2ProPlus, required there): the speaker embedding of each reference, aligned
        with ``spec``: a list of ``[1, 20480]`` for a list of references, ``[B or 1, 20480]`` for a
        spec array; each reference's ``ge`` is fused with its own embedding before the average.
        """
        out = self._decode_batch(codes, phones, spec, noise_scale, speed, noise, codes_lens, phones_lens, seed,
                                 sv_emb=sv_emb)
        return out["wavs"]

    def _decode_batch(self, codes, phones, spec, noise_scale=0.5, speed=1.0, noise=None, codes_lens=None,
                      phones_lens=None, seed=None, with_aux=False, sv_emb=None) -> dict:
        if self.speaker_verification and sv_emb is None:
            raise ValueError(
                f"this {self.version} model needs the speaker embedding of every reference: decode(..., "
                "sv_emb=[sv.embed(ref_wav_16k)[None]]) with sv = gsv_jax.load_sv('pretrained_eres2netv2w24s4ep4.ckpt')")
        cfg = self.config
        codes = np.asarray(codes)
        if codes.ndim == 3:
            if codes.shape[0] != 1:
                raise ValueError(f"codes of shape {codes.shape}: only one quantizer layer (n_q = 1) exists")
            codes = codes[0]
        if codes.ndim == 1:
            codes = codes[None]
        phones = np.asarray(phones)
        if phones.ndim == 1:
            phones = phones[None]
        if codes.ndim != 2 or phones.ndim != 2:
            raise ValueError(f"codes must be [B, Tc] and phones [B, Tt]; got {codes.shape} and {phones.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or not np.issubdtype(phones.dtype, np.integer):
            raise ValueError("codes and phones must be integer arrays")
        B = codes.shape[0]
        if phones.shape[0] != B:
            raise ValueError(f"codes has {B} rows but phones has {phones.shape[0]}")
        c_lens = np.full((B,), codes.shape[1]) if codes_lens is None else np.asarray(codes_lens).reshape(-1)
        p_lens = np.full((B,), phones.shape[1]) if phones_lens is None else np.asarray(phones_lens).reshape(-1)
        if c_lens.shape != (B,) or p_lens.shape != (B,):
            raise ValueError("codes_lens / phones_lens need one length per row")
        if np.any(c_lens < 1) or np.any(c_lens > codes.shape[1]):
            raise ValueError(f"codes_lens {c_lens.tolist()} must be in 1..{codes.shape[1]} (no empty rows)")
        if np.any(p_lens < 1) or np.any(p_lens > phones.shape[1]):
            raise ValueError(f"phones_lens {p_lens.tolist()} must be in 1..{phones.shape[1]}: empty phoneme "
                             "sequences cannot be synthesised (give at least one phoneme per row)")
        for b in range(B):
            c, p = codes[b, : c_lens[b]], phones[b, : p_lens[b]]
            if c.min() < 0 or c.max() >= cfg.codebook_bins:
                raise ValueError(f"row {b}: semantic codes must be in 0..{cfg.codebook_bins - 1}, found "
                                 f"{int(c.min())}..{int(c.max())} (EOS 1024 must be stripped first)")
            if p.min() < 0 or p.max() >= cfg.n_symbols:
                raise ValueError(f"row {b}: phoneme ids must be in 0..{cfg.n_symbols - 1} for a {cfg.version} "
                                 f"model, found {int(p.min())}..{int(p.max())}")
        speed = float(speed)
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")

        # reference embedding(s)
        if isinstance(spec, (list, tuple)):
            # several references: arithmetic mean (v2Pro*: of the per-reference fused embeddings)
            ge = self.ref_embedding(spec, sv_emb).mean(0, keepdims=True)
        else:
            ge = self.ref_embedding(spec, sv_emb)
        if ge.shape[0] == 1 and B > 1:
            ge = np.repeat(ge, B, 0)
        if ge.shape[0] != B:
            raise ValueError(f"spec has {ge.shape[0]} rows for {B} rows of codes; give one per row, one shared, "
                             "or a list of references")

        # lengths and buckets
        Tc = buckets.ladder(int(c_lens.max()), minimum=MIN_FRAMES)
        Tt = buckets.ladder(int(p_lens.max()), minimum=MIN_FRAMES)
        y_lens = 2 * c_lens
        # the original resizes to int(T / speed) + 1 frames whenever speed != 1
        out_lens = y_lens if speed == 1.0 else np.array([int(n / speed) + 1 for n in y_lens])
        T_out = 2 * buckets.ladder(-(-int(out_lens.max()) // 2), minimum=MIN_FRAMES)
        codes_p = np.zeros((B, Tc), np.int32)
        phones_p = np.zeros((B, Tt), np.int32)
        for b in range(B):
            codes_p[b, : c_lens[b]] = codes[b, : c_lens[b]]
            phones_p[b, : p_lens[b]] = phones[b, : p_lens[b]]
        eps = np.zeros((B, T_out, cfg.inter_channels), np.float32)
        if noise is not None:
            n = np.asarray(noise, np.float32)
            if n.ndim == 2:
                n = n[None]
            if n.shape[0] != B or n.shape[1] != cfg.inter_channels or n.shape[2] < int(out_lens.max()):
                raise ValueError(f"noise must be [B={B}, {cfg.inter_channels}, >= {int(out_lens.max())}], "
                                 f"got {n.shape}")
            for b in range(B):
                eps[b, : out_lens[b]] = n[b, :, : out_lens[b]].T
        elif noise_scale != 0:
            # drawn on the host: a device draw would compile once per utterance length
            draw = np.random.default_rng(seed).standard_normal(eps.shape, dtype=np.float32)
            for b in range(B):
                eps[b, : out_lens[b]] = draw[b, : out_lens[b]]
        res = self._jit_decode(
            self.device_params, self.device_prepared, jnp.asarray(codes_p), jnp.asarray(y_lens, jnp.int32), jnp.asarray(phones_p),
            jnp.asarray(p_lens, jnp.int32), jnp.asarray(ge[:, None, :]), jnp.asarray(eps),
            jnp.asarray(noise_scale, jnp.float32), jnp.asarray(out_lens, jnp.int32))
        hop = cfg.hop
        wav = np.asarray(res["wav"])
        out = {"wavs": [wav[b, : out_lens[b] * hop].astype(np.float32) for b in range(B)], "ge": ge,
               "out_lens": out_lens}
        if with_aux:
            for k in ("x", "m_p", "logs_p", "z"):
                v = np.asarray(res[k])
                out[k] = [v[b, : (y_lens[b] if k == "x" else out_lens[b])].T for b in range(B)]
        return out

    # ------------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Our own checkpoint: a folder with ``s2_config.json`` and ``s2_params.npz`` (training form)."""
        path = pathlib.Path(path)
        path.mkdir(parents=True, exist_ok=True)
        flat = {conv.path_to_torch_key(p): np.asarray(v) for p, v in flatten(self.params).items()}
        flat.update({k: np.asarray(v) for k, v in self.buffers.items()})
        meta = {"model": self.config.to_dict(), "info": self.info,
                # what the original file held beyond the weights, so an export gives it back unchanged
                "hparams": self.hparams.to_dict() if isinstance(self.hparams, HParams) else self.hparams,
                "key_order": self.key_order}
        for name, write in ((OWN_PARAMS, lambda f: np.savez(f, **flat)),
                            (OWN_CONFIG, lambda f: f.write(json.dumps(meta, indent=1).encode()))):
            tmp = path / (name + ".tmp")
            with open(tmp, "wb") as f:  # temp file + rename: a reader never sees half a file
                write(f)
            tmp.replace(path / name)

    def state_dict(self, *, dtype=np.float16, with_enc_q: bool = False) -> dict:
        """The original's state dict (weight norm as ``weight_g/weight_v``, fp16 by default)."""
        params = self.params
        buffers = self.buffers or conv.default_buffers(
            np.asarray(params["quantizer"]["vq"]["layers_0"]["_codebook"]["embed"]))
        return conv.params_to_state_dict(params, _wn_layers(self.config), dtype=dtype, drop_enc_q=not with_enc_q,
                                         buffers=buffers, key_order=self.key_order)


# ----------------------------------------------------------------------------------------------
# jitted cores (model bound with functools.partial; shared by every S2 of the same architecture)

@functools.cache
def _jitted(config: S2ModelConfig):
    model = SynthesizerTrn(config, weight_norm=False, spectral_convs=True)
    salt = repr(config)
    return (programs.cached_jit(functools.partial(_extract_latent, model), "s2_extract_latent", salt),
            programs.cached_jit(functools.partial(_ref_embedding, model), "s2_ref_embedding", salt),
            programs.cached_jit(functools.partial(_decode_core, model), "s2_decode", salt))


def _map_kernels(params, fn):
    """Apply ``fn`` to every conv kernel (the 3-D ``weight`` leaves)."""
    def visit(tree):
        return {k: visit(v) if isinstance(v, dict) else (fn(v) if k == "weight" and np.ndim(v) == 3 else v)
                for k, v in tree.items()}
    return visit(params)


def _kernels_to_torch_layout(params):
    """Inside the jitted functions: back to the torch layout the modules read.  The modules
    transpose kernels into XLA's ``[k, in, out]`` form again, and XLA folds the two transposes
    away, so no kernel is rearranged per call (that cost ~8 % of a decode)."""
    return _map_kernels(params, lambda w: jnp.transpose(w, (2, 1, 0)))


def _extract_latent(model, params, ssl):
    params = _kernels_to_torch_layout(params)
    return model.apply({"params": params}, ssl, method=SynthesizerTrn.extract_latent)


def _ref_embedding(model, params, spec, lens, sv):
    """``ge [1, 1, gin]`` of one reference; v2Pro* with ``sv [1, sv_dim]``: fused with its speaker embedding."""
    params = _kernels_to_torch_layout(params)
    mask = sequence_mask(lens, spec.shape[1])

    def run(m):
        ge = m.ref_embedding(spec, mask)
        return ge if sv is None else m.fuse_speaker(ge, sv)

    return model.apply({"params": params}, method=run)


def _decode_core(model, params, prepared, codes, y_lens, text, text_lens, ge, eps, noise_scale, out_lens):
    from gsv_jax.models.s2.text_encoder import linear_resize

    params = _kernels_to_torch_layout(params)

    def run(m):
        T = 2 * codes.shape[1]
        y_mask = sequence_mask(y_lens, T)
        text_mask = sequence_mask(text_lens, text.shape[1])
        q = m.quantized_from_codes(codes)
        x = m.prior(q, y_mask, text, text_mask, m.text_condition(ge))  # v2Pro*: ge_to512(ge)
        # speed: linear resize from y_lens to out_lens frames (the identity, exactly, when they are equal)
        xs = linear_resize(x, y_lens, out_lens, eps.shape[1])
        mask = sequence_mask(out_lens, eps.shape[1])
        m_p, logs_p = m.prior_stats(xs, mask)
        z_p = m_p + eps * jnp.exp(logs_p) * noise_scale
        z = m.flow_reverse(z_p, mask, ge)
        wav = m.decode_wave(z, ge, mask)
        return {"wav": wav, "x": x, "m_p": m_p, "logs_p": logs_p, "z": z}  # latents are small: always returned

    return model.apply({"params": params, "prepared": prepared}, method=run)


# ----------------------------------------------------------------------------------------------
# loading / saving

def load_s2(path, *, config: dict | None = None, base=None):
    """Load a SoVITS model: an exported ``.pth``, a pretrained ``s2G*.pth``, a training ``G_*.pth``
    (with ``enc_q``), or our own checkpoint folder (:meth:`S2.save`). ``config`` overrides the
    architecture (only needed for files without a stored config whose shapes are ambiguous).

    v1/v2/v2Pro/v2ProPlus give an :class:`S2`; v3/v4 (and their LoRA fine-tunes, merged onto
    ``base``, the full model they were trained from) give a :class:`gsv_jax.inference.v3.S2V3`."""
    path = pathlib.Path(path)
    if path.is_dir():
        return _load_own(path)
    if not path.exists():
        raise FileNotFoundError(f"SoVITS model not found: {path}")
    head, digest = families.head_digest(path)
    if families.HEADS.get(head, ("", False))[1] or families.HASHES.get(digest) in ("v3", "v4"):
        from gsv_jax.inference.v3 import load_s2_v3  # LoRA heads and official v3/v4 files: no VITS read

        return load_s2_v3(path, base=base)
    sd, hps, meta = conv.read_s2_file(path)
    version = meta["detected_version"]
    if families.family(version).decoder == "cfm":
        from gsv_jax.inference.v3 import load_s2_v3

        return load_s2_v3(path, base=base)
    conv.refuse_unsupported(path, version)
    if config is not None:
        model_cfg = dict(config)
    elif hps is not None and "model" in hps:
        m = hps["model"]
        model_cfg = m.to_dict() if isinstance(m, HParams) else dict(m)
    else:
        model_cfg = conv.config_from_state_dict(sd, version)
    model_cfg["version"] = version
    if "sv_emb.weight" in sd:  # the embedding width the file's sv_emb takes (20480 for ERes2NetV2)
        model_cfg["sv_dim"] = int(np.shape(sd["sv_emb.weight"])[1])
    cfg = S2ModelConfig.from_mapping(model_cfg)
    has_enc_q = any(k.startswith("enc_q.") for k in sd)
    params, buffers = conv.state_dict_to_params(sd, _template(cfg, has_enc_q), where=str(path))
    return S2(cfg, params, buffers=buffers, hparams=hps, info=meta.get("info"), key_order=list(sd))


def _load_own(path: pathlib.Path) -> S2:
    cfg_file, par_file = path / OWN_CONFIG, path / OWN_PARAMS
    if not cfg_file.exists() or not par_file.exists():
        raise CheckpointError(f"{path} is a folder but not a gsv_jax S2 checkpoint ({OWN_CONFIG} + {OWN_PARAMS})")
    meta = json.loads(cfg_file.read_text())
    cfg = S2ModelConfig.from_mapping(meta["model"])
    with np.load(par_file) as z:
        sd = {k: z[k] for k in z.files}
    has_enc_q = any(k.startswith("enc_q.") for k in sd)
    params, buffers = conv.state_dict_to_params(sd, _template(cfg, has_enc_q), where=str(path))
    hps = meta.get("hparams")
    return S2(cfg, params, buffers=buffers, info=meta.get("info"), key_order=meta.get("key_order"),
              hparams=HParams(**hps) if isinstance(hps, dict) else None)


def save_s2_torch(s2: S2, path, *, info: str | None = None) -> None:
    """Export in the original's weights format (``SoVITS_weights*/<name>.pth``: fp16, no ``enc_q``,
    pickled ``HParams`` config; v2Pro/v2ProPlus with the head ``05``/``06`` the original writes);
    loadable by the original GPT-SoVITS."""
    hps = s2.hparams if s2.hparams is not None else conv.make_hparams(s2.config.to_dict(), s2.version)
    conv.write_s2_export(path, s2.state_dict(), hps, info=info or s2.info or "gsv_jax export", version=s2.version)


def new_s2(config: S2ModelConfig, seed: int = 0, *, with_enc_q: bool = True, fast: bool = False) -> S2:
    """A freshly initialised model (random weights). ``fast=True`` fills the parameter shapes with numpy
    draws of the right scale (no XLA compile of the initialiser; for benchmarks), otherwise the modules'
    own initialisers (as for training from scratch)."""
    if not fast:
        params = jax.device_get(init_params(config, jax.random.PRNGKey(seed), weight_norm=True,
                                            with_enc_q=with_enc_q))
        return S2(config, jax.tree_util.tree_map(np.asarray, params))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in flatten(_template(config, with_enc_q)).items():
        shape, name = tuple(leaf.shape), path[-1]
        if name in ("bias", "beta"):
            v = np.zeros(shape, np.float32)
        elif name == "gamma" or name == "weight_g":
            v = np.ones(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            v = (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)
        flat[path] = v
    return S2(config, unflatten(flat))
