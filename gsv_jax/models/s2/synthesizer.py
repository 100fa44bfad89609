"""``SynthesizerTrn`` (SoVITS v1/v2/v2Pro/v2ProPlus): the module tree of docs/s2.md and its inference/training pieces.

Everything is channels-last ``[B, T, C]`` with float masks ``[B, T, 1]``; parameter names follow the
PyTorch state dict (``enc_p/encoder_ssl/attn_layers_0/conv_q/weight`` <-> ``enc_p.encoder_ssl.attn_layers.0.conv_q.weight``).

Methods (call with ``model.apply(variables, ..., method=...)``):
  * ``extract_latent(ssl)``                      HuBERT features (50 Hz) -> codes (25 Hz)
  * ``ref_embedding(spec, mask)``                 reference spectrogram -> ``ge [B, 1, gin]``
  * ``fuse_speaker(ge, sv)``                      v2Pro*: ``prelu(ge + sv_emb(sv))`` (per reference)
  * ``text_condition(ge)``                        the ``ge`` the text encoder (MRTE) gets: ``ge_to512(ge)`` for v2Pro*
  * ``prior(codes, y_mask, text, text_mask, ge)`` codes + phonemes -> ``encoder2`` output (before speed/proj)
  * ``prior_stats(x, mask)``                      ``(m_p, logs_p)``
  * ``flow_reverse / flow_forward(z, mask, ge)``
  * ``decode_wave(z, ge, mask)``                  HiFi-GAN
  * ``posterior(spec, mask, ge, noise)``          ``enc_q`` (training)
  * ``quantized(ssl)``                            training path: ``ssl_proj`` -> codebook (eval) -> x2 frames
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax import families
from gsv_jax.models.s2 import quantizer as vq
from gsv_jax.models.s2.generator import Generator
from gsv_jax.models.s2.modules import Conv1d, Linear, ResidualCouplingBlock, sequence_mask
from gsv_jax.models.s2.posterior import PosteriorEncoder
from gsv_jax.models.s2.quantizer import ResidualVectorQuantizer, quantize_codes
from gsv_jax.models.s2.ref_enc import MelStyleEncoder
from gsv_jax.models.s2.text_encoder import TextEncoder


@dataclasses.dataclass(frozen=True)
class S2ModelConfig:
    """Hyper-parameters of ``SynthesizerTrn`` (names as in the original ``hps.model``)."""

    version: str = "v2"
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    resblock: str = "1"
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple = (10, 8, 2, 2, 2)
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: tuple = (16, 16, 8, 2, 2)
    gin_channels: int = 512
    semantic_frame_rate: str = "25hz"
    spec_channels: int = 1025
    segment_size: int = 32
    ssl_dim: int = 768
    codebook_bins: int = 1024
    sv_dim: int = 20480  # v2Pro*: width of the speaker-verification embedding (ERes2NetV2 forward3)
    # True (fine-tuning, the original's configs): ssl_proj + codebook frozen, eval semantics; False
    # (pretraining): the codebook is learned (k-means init, EMA, expiry, straight-through, commit loss)
    freeze_quantizer: bool = True

    @property
    def speaker_verification(self) -> bool:
        """Whether ``ge`` is fused with a speaker-verification embedding (v2Pro, v2ProPlus)."""
        return families.family(self.version).speaker_verification

    @property
    def n_symbols(self) -> int:
        return families.family(self.version).n_symbols

    @property
    def ref_in(self) -> int:
        return min(families.family(self.version).ref_bins, self.spec_channels)

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_mapping(cls, m, **overrides) -> S2ModelConfig:
        """From ``hps.model`` / a config dict / ``ml_collections`` (unknown fields ignored, lists -> tuples)."""
        if hasattr(m, "to_dict"):
            m = m.to_dict()
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in dict(m).items():
            if k in names:
                kw[k] = _tuplify(v)
        kw.update({k: _tuplify(v) for k, v in overrides.items()})
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: _listify(v) for k, v in d.items()}

    def validate(self):
        fam = families.family(self.version)
        if fam.decoder != "hifigan" or not fam.supported:
            runs = [f.name for f in families.FAMILIES.values() if f.supported and f.decoder == "hifigan"]
            raise ValueError(f"S2 model version {self.version!r} is not supported by SynthesizerTrn here ({runs} are)")
        if self.resblock != "1":
            raise ValueError(f"resblock {self.resblock!r} is not supported (GPT-SoVITS configs use '1')")
        if self.semantic_frame_rate != "25hz":
            raise ValueError(f"semantic_frame_rate {self.semantic_frame_rate!r} is not supported (loaders force '25hz')")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, (list, tuple)) else v


def _listify(v):
    return [_listify(x) for x in v] if isinstance(v, (list, tuple)) else v


class PReLU(nn.Module):
    """``torch.nn.PReLU(num_parameters=C)``: ``max(0, x) + a_c * min(0, x)`` on the last axis (slopes 0.25 at init)."""

    channels: int

    @nn.compact
    def __call__(self, x):
        a = self.param("weight", nn.with_logical_partitioning(nn.initializers.constant(0.25), ("embed",)),
                       (self.channels,))
        return jnp.where(x >= 0, x, x * a.astype(x.dtype))


class SynthesizerTrn(nn.Module):
    config: S2ModelConfig
    weight_norm: bool = False  # True: (g, v) parameters (training); False: folded ``weight`` (inference)
    with_enc_q: bool = False
    exact_ref_lengths: bool = True  # see ref_enc.py
    deterministic: bool = True  # dropout off
    spectral_convs: bool = False  # HiFi-GAN's wide convs in the frequency domain (faster; rounding-level change)

    def setup(self):
        c = self.config
        wn = self.weight_norm
        pd = 0.0 if self.deterministic else c.p_dropout
        self.enc_p = TextEncoder(c.inter_channels, c.hidden_channels, c.filter_channels, c.n_heads, c.n_layers,
                                 c.kernel_size, c.n_symbols, c.ssl_dim, pd)
        self.dec = Generator(c.inter_channels, c.resblock_kernel_sizes, c.resblock_dilation_sizes,
                             c.upsample_rates, c.upsample_initial_channel, c.upsample_kernel_sizes,
                             c.gin_channels, weight_norm=wn, spectral_convs=self.spectral_convs)
        if self.with_enc_q:
            self.enc_q = PosteriorEncoder(c.spec_channels, c.inter_channels, c.hidden_channels, 5, 1, 16,
                                          c.gin_channels, weight_norm=wn)
        self.flow = ResidualCouplingBlock(c.inter_channels, c.hidden_channels, 5, 1, 4, 4, c.gin_channels,
                                          weight_norm=wn)
        self.ref_enc = MelStyleEncoder(c.ref_in, c.gin_channels, p_dropout=pd, exact_lengths=self.exact_ref_lengths)
        self.ssl_proj = Conv1d(c.ssl_dim, c.ssl_dim, 2, stride=2)
        self.quantizer = ResidualVectorQuantizer(c.ssl_dim, c.codebook_bins)
        if c.speaker_verification:  # v2Pro*: speaker fusion (docs/s2.md, "v2Pro speaker fusion")
            self.sv_emb = Linear(c.sv_dim, c.gin_channels)
            self.ge_to512 = Linear(c.gin_channels, 512)
            self.prelu = PReLU(c.gin_channels)

    # --- inference pieces ---------------------------------------------------------------------
    def extract_latent(self, ssl):
        """``ssl [B, T50, 768]`` -> codes ``[B, T50 // 2]`` int32."""
        return quantize_codes(self.ssl_proj(ssl), self.quantizer())

    def ref_embedding(self, spec, mask):
        """``spec [B, T, 1025]`` linear spectrogram, ``mask [B, T, 1]`` -> ``ge [B, 1, gin]``."""
        x = spec[..., : self.config.ref_in]
        return self.ref_enc(x * mask, mask, deterministic=self.deterministic)

    def fuse_speaker(self, ge, sv):
        """v2Pro*: ``ge [B, 1, gin]`` + the speaker embedding ``sv [B, sv_dim]`` -> ``prelu(ge + sv_emb(sv))``
        (one reference at a time; several references are averaged after this); identity otherwise."""
        if not self.config.speaker_verification:
            return ge
        if sv is None:
            raise ValueError(f"a {self.config.version} model needs the speaker-verification embedding of each "
                             "reference (sv_emb)")
        return self.prelu(ge + self.sv_emb(sv)[:, None, :])

    def text_condition(self, ge):
        """The conditioning the text encoder's MRTE adds: ``ge_to512(ge)`` for v2Pro* (512-wide), else ``ge``."""
        return self.ge_to512(ge) if self.config.speaker_verification else ge

    def quantized_from_codes(self, codes):
        """``codes [B, Tc]`` -> codebook vectors repeated to 50 Hz ``[B, 2 Tc, 768]``."""
        q = jnp.take(self.quantizer(), codes, axis=0)
        return jnp.repeat(q, 2, axis=1)

    def prior(self, quantized, y_mask, text, text_mask, ge):
        """Text encoder up to ``encoder2`` (speed and ``proj`` come after, see :meth:`prior_stats`)."""
        return self.enc_p(quantized, y_mask, text, text_mask, ge, deterministic=self.deterministic)

    def prior_stats(self, x, mask):
        return self.enc_p.stats(x, mask)

    def flow_reverse(self, z_p, mask, ge):
        return self.flow(z_p, mask, ge, reverse=True)

    def flow_forward(self, z, mask, ge):
        return self.flow(z, mask, ge, reverse=False)

    def decode_wave(self, z, ge, mask=None):
        """``z [B, T, inter]`` -> waveform ``[B, T * hop]`` (``mask`` makes padded rows exact)."""
        return self.dec(z if mask is None else z * mask, ge, mask)

    # --- training pieces ----------------------------------------------------------------------
    def quantized_trainable(self, ssl, draws=None):
        """``freeze_quantizer=False``: ``ssl_proj`` (with gradient) -> the trainable codebook
        (:func:`quantizer.train_forward`, statistics from the ``codebook`` collection), x2 frames.
        Returns ``(quantized [B, 2 T25, 768], VQTrainResult)``; random rows from the ``vq`` rng."""
        x = self.ssl_proj(ssl).astype(jnp.float32)
        embed, stats = self.quantizer(with_stats=True)
        key = self.make_rng("vq") if self.has_rng("vq") else jax.random.PRNGKey(0)
        cfg = vq.CodebookConfig(bins=self.config.codebook_bins, dim=self.config.ssl_dim)
        r = vq.train_forward(x, embed, stats, cfg, key=key, draws=draws)
        return jnp.repeat(r.quantized, 2, axis=1), r

    def quantized(self, ssl):
        """Training path: ``ssl_proj`` + codebook lookup in eval mode (no gradient to either), x2 frames."""
        x = jax.lax.stop_gradient(self.ssl_proj(ssl))
        codes = quantize_codes(x, self.quantizer())
        return self.quantized_from_codes(codes), codes

    def posterior(self, spec, mask, ge, noise=None):
        return self.enc_q(spec, mask, ge, noise)

    def __call__(self, ssl, spec, spec_lengths, text, text_lengths, enc_q_noise=None, slice_ids=None, sv_emb=None,
                 vq_draws=None):
        """Training forward (``SynthesizerTrn.forward``) with injected randomness.

        ``ssl [B, Tssl, 768]``, ``spec [B, T, 1025]``, ``text [B, Tt]``; ``enc_q_noise [B, T, inter]``
        (zeros if None); ``slice_ids [B]`` segment starts (see :func:`rand_slice_ids`); ``sv_emb
        [B, sv_dim]`` the utterances' speaker embeddings (v2Pro*, required there); ``vq_draws`` injected
        codebook draws (``freeze_quantizer=False``, see :func:`quantizer.make_draws`).
        Returns a dict: ``y_hat [B, segment*hop]``, ``slice_ids``, ``mask [B, T, 1]``, ``ge [B, 1, gin]``,
        ``x`` (text-encoder output), ``m_p, logs_p, z, m_q, logs_q, z_p`` (all ``[B, T, inter]``);
        with a trainable quantizer also ``kl_ssl`` (commitment loss), ``codes [B, T25]``,
        ``codebook_embed`` and ``codebook_stats`` (the codebook after this forward's update).
        """
        T = spec.shape[1]
        y_mask = sequence_mask(spec_lengths, T, spec.dtype)
        ge = self.fuse_speaker(self.ref_embedding(spec, y_mask), sv_emb)
        if self.config.freeze_quantizer:
            q, _ = self.quantized(ssl)
            vq_out = {}
        else:
            q, r = self.quantized_trainable(ssl, vq_draws)
            vq_out = {"kl_ssl": r.commit_loss, "codes": r.codes, "codebook_embed": r.embed,
                      "codebook_stats": r.stats}
        q = q[:, :T]
        text_mask = sequence_mask(text_lengths, text.shape[1], spec.dtype)
        x = self.prior(q, y_mask, text, text_mask, self.text_condition(ge))
        m_p, logs_p = self.prior_stats(x, y_mask)
        z, m_q, logs_q = self.posterior(spec, y_mask, ge, enc_q_noise)
        z_p = self.flow_forward(z, y_mask, ge)
        if slice_ids is None:
            slice_ids = jnp.zeros((spec.shape[0],), jnp.int32)
        z_slice = slice_segments(z, slice_ids, self.config.segment_size)
        y_hat = self.decode_wave(z_slice, ge)
        return {"y_hat": y_hat, "slice_ids": slice_ids, "mask": y_mask, "ge": ge, "x": x, "m_p": m_p,
                "logs_p": logs_p, "z": z, "m_q": m_q, "logs_q": logs_q, "z_p": z_p, **vq_out}


def rand_slice_ids(u, lengths, segment_size: int):
    """The original's ``rand_slice_segments`` start frames from uniform draws ``u [B]``."""
    return (u * (jnp.asarray(lengths) - segment_size + 1).astype(u.dtype)).astype(jnp.int32)


def slice_segments(x, ids, size: int):
    """``x [B, T, C]`` -> ``[B, size, C]`` starting at ``ids[b]`` (time axis 1)."""
    return jax.vmap(lambda xb, i: jax.lax.dynamic_slice_in_dim(xb, i, size, axis=0))(x, ids)


def init_params(config: S2ModelConfig, rng, *, weight_norm: bool = True, with_enc_q: bool = True):
    """Fresh (unboxed) parameters for ``config`` with tiny dummy shapes."""
    model = SynthesizerTrn(config, weight_norm=weight_norm, with_enc_q=True)
    T = config.segment_size

    sv = jnp.zeros((1, config.sv_dim)) if config.speaker_verification else None

    def init(key):
        return model.init(key, jnp.zeros((1, T, config.ssl_dim)), jnp.zeros((1, T, config.spec_channels)),
                          jnp.array([T]), jnp.zeros((1, 3), jnp.int32), jnp.array([3]),
                          slice_ids=jnp.zeros((1,), jnp.int32), sv_emb=sv)["params"]

    params = nn.meta.unbox(jax.jit(init)(rng))
    if not with_enc_q:
        params = {k: v for k, v in params.items() if k != "enc_q"}
    return params
