"""``SynthesizerTrnV3`` (SoVITS v3 and v4): semantic codes + phonemes -> mel features for the CFM
decoder (docs/v3v4.md).

Reuses the v2 pieces (``enc_p``, ``ref_enc`` on 704 bins, ``ssl_proj``, ``quantizer``) and adds the
``bridge`` (1x1 conv + LeakyReLU 0.01), the nearest up-sampling to the mel rate (x1.875 for v3,
x2 for v4), the WaveNet encoder ``wns1`` and the ``cfm`` (DiT) decoder. v3 and v4 have the same
parameters; they differ in the up-sampling factor and in the mel front end / vocoder.

Channels-last ``[B, T, C]``, float masks ``[B, T, 1]``; parameter names follow the state dict
(``wns1/enc/in_layers_0/weight_g`` <-> ``wns1.enc.in_layers.0.weight_g``).
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.models.cfm import CFM
from gsv_jax.models.s2.modules import WN, Conv1d, lrelu
from gsv_jax.models.s2.quantizer import ResidualVectorQuantizer, quantize_codes
from gsv_jax.models.s2.ref_enc import MelStyleEncoder
from gsv_jax.models.s2.text_encoder import TextEncoder, linear_resize

# per version: nearest up-sampling factor of the 50 Hz features
UPSAMPLE = {"v3": 1.875, "v4": 2.0}


@dataclasses.dataclass(frozen=True)
class V3ModelConfig:
    """Hyper-parameters of ``SynthesizerTrnV3``; the widths the original hard-codes (bridge 512,
    wns1 8 layers, DiT 1024 x 22) are fields so that smaller models (tests) can be read from shapes."""

    version: str = "v3"
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    gin_channels: int = 512
    n_symbols: int = 732
    ssl_dim: int = 768
    codebook_bins: int = 1024
    ref_in: int = 704
    model_dim: int = 512  # bridge / wns1 width = DiT text_dim
    wns1_layers: int = 8
    wns1_kernel: int = 5
    mel_dim: int = 100
    dit_dim: int = 1024
    dit_depth: int = 22
    dit_heads: int = 16
    dit_dim_head: int = 64
    dit_ff_mult: int = 2
    dit_conv_layers: int = 4

    def __post_init__(self):
        if self.version not in UPSAMPLE:
            raise ValueError(f"SynthesizerTrnV3 version must be 'v3' or 'v4', got {self.version!r}")

    @property
    def upsample(self) -> float:
        return UPSAMPLE[self.version]

    def replace(self, **kw) -> V3ModelConfig:
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def nearest_index(n_in: int, factor: float) -> np.ndarray:
    """Source frame of every output frame of ``F.interpolate(mode="nearest", scale_factor=factor)``:
    output length ``floor(n_in · factor)`` (in double), index ``floor(j · float32(1 / factor))`` (in
    float32), clamped to ``n_in - 1`` -- torch's CPU kernel (v3: ``floor(j · 8 / 15)``, v4: ``j // 2``)."""
    n_out = math.floor(n_in * float(factor))
    scale = np.float32(1.0 / float(factor))
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def encoded_lengths(n_codes: int, version: str, speed: float = 1.0) -> tuple[int, int, int]:
    """``(frames at 50 Hz fed to the bridge, frames of fea, frames the wns1 mask keeps)`` for ``n_codes``
    codes: with speed != 1 the 50 Hz features are resized to ``int(2 Tc / speed) + 1`` frames; the mask
    length is the original's ``int(Tc · (3.875 | 4) / speed) (+ 1)``, which may cut the last frame."""
    factor = {"v3": 3.875, "v4": 4.0}[version]
    if speed == 1:
        y, keep = 2 * n_codes, int(n_codes * factor)
    else:
        y, keep = int(2 * n_codes / speed) + 1, int(n_codes * factor / speed) + 1
    n = math.floor(y * UPSAMPLE[version])
    return y, n, min(n, keep)


class WNEncoder(nn.Module):
    """``models.Encoder``: ``pre`` 1x1 -> WaveNet (conditioned on ``g``, gradient stopped) -> ``proj`` 1x1."""

    channels: int
    hidden: int
    kernel_size: int
    n_layers: int
    gin_channels: int
    weight_norm: bool = False

    @nn.compact
    def __call__(self, x, mask, g):
        g = jax.lax.stop_gradient(g)
        x = Conv1d(self.channels, self.hidden, 1, name="pre")(x) * mask
        x = WN(self.hidden, self.kernel_size, 1, self.n_layers, self.gin_channels, weight_norm=self.weight_norm,
               name="enc")(x, mask, g)
        return Conv1d(self.hidden, self.channels, 1, name="proj")(x) * mask


class SynthesizerTrnV3(nn.Module):
    config: V3ModelConfig
    weight_norm: bool = False  # True: wns1 as (g, v) (training); False: folded weights (inference)
    deterministic: bool = True

    def setup(self):
        c = self.config
        pd = 0.0 if self.deterministic else c.p_dropout
        self.enc_p = TextEncoder(c.inter_channels, c.hidden_channels, c.filter_channels, c.n_heads, c.n_layers,
                                 c.kernel_size, c.n_symbols, c.ssl_dim, pd)
        self.ref_enc = MelStyleEncoder(c.ref_in, c.gin_channels, p_dropout=pd, exact_lengths=True)
        self.ssl_proj = Conv1d(c.ssl_dim, c.ssl_dim, 2, stride=2)
        self.quantizer = ResidualVectorQuantizer(c.ssl_dim, c.codebook_bins)
        self.bridge_0 = Conv1d(c.hidden_channels, c.model_dim, 1)
        self.wns1 = WNEncoder(c.model_dim, c.model_dim, c.wns1_kernel, c.wns1_layers, c.gin_channels,
                              weight_norm=self.weight_norm)
        self.linear_mel = Conv1d(c.model_dim, c.mel_dim, 1)
        self.cfm = CFM(c.mel_dim, c.dit_dim, c.dit_depth, c.dit_heads, c.dit_dim_head, c.dit_ff_mult, c.model_dim,
                       c.dit_conv_layers)

    # --- pieces -------------------------------------------------------------------------------
    def extract_latent(self, ssl):
        """``ssl [B, T50, 768]`` -> codes ``[B, T50 // 2]``."""
        return quantize_codes(self.ssl_proj(ssl), self.quantizer())

    def ref_embedding(self, spec, mask):
        """``spec [B, T, 1025]`` linear spectrogram -> ``ge [B, 1, gin]`` (first 704 bins)."""
        x = spec[..., : self.config.ref_in]
        return self.ref_enc(x * mask, mask, deterministic=self.deterministic)

    def text_features(self, codes, y_mask, text, text_mask, ge):
        """``enc_p`` hidden output ``x [B, 2 Tc, hidden]`` (codebook lookup, nearest x2, encoder)."""
        q = jnp.repeat(jnp.take(self.quantizer(), codes, axis=0), 2, axis=1)
        return self.enc_p(q, y_mask, text, text_mask, ge, deterministic=self.deterministic)

    def bridge(self, x):
        return lrelu(self.bridge_0(x), 0.01)

    def mel_features(self, b, index, mask, ge):
        """Nearest up-sampling by ``index [B, Tf]`` (see :func:`nearest_index`) then ``wns1`` -> ``fea [B, Tf, model_dim]``."""
        up = jnp.take_along_axis(b, index[..., None], axis=1)
        return self.wns1(up * mask, mask, ge)

    def decode_encp(self, codes, y_mask, text, text_mask, ge, index, fea_mask, resize=None):
        """The original's ``decode_encp`` on a padded batch. ``codes [B, Tc]``, ``y_mask [B, 2Tc, 1]``,
        ``index [B, Tf]`` source frames of the up-sampling (:func:`nearest_index`), ``fea_mask [B, Tf, 1]``
        (the ``wns1`` mask, see :func:`encoded_lengths`). ``resize = (y_lens, out_lens, out_len)`` when
        speed != 1: the 50 Hz features are first resized linearly (``F.interpolate(mode="linear")``).
        Returns ``(fea [B, Tf, model_dim], x [B, 2Tc, hidden])``."""
        x = self.text_features(codes, y_mask, text, text_mask, ge)
        y = x if resize is None else linear_resize(x, *resize)
        return self.mel_features(self.bridge(y), index, fea_mask, ge), x

    def __call__(self, codes, y_mask, text, text_mask, spec, spec_mask, index, fea_mask, noise, cond, t, d):
        """Every parameter once (initialisation / training forms): returns the CFM velocity."""
        ge = self.ref_embedding(spec, spec_mask)
        fea, x = self.decode_encp(codes, y_mask, text, text_mask, ge, index, fea_mask)
        # parameters the inference path does not read (kept so that files round-trip)
        _ = self.enc_p.stats(x, y_mask), self.linear_mel(fea), self.ssl_proj(jnp.zeros((1, 2, self.config.ssl_dim)))
        return self.cfm(noise, cond, t, d, fea, fea_mask)


def init_params(config: V3ModelConfig, rng, *, weight_norm: bool = True):
    """Fresh parameters (tiny dummy shapes)."""
    model = SynthesizerTrnV3(config, weight_norm=weight_norm)
    Tc, Tt, Ts = 4, 3, 8
    Tf = encoded_lengths(Tc, config.version)[1]
    args = (jnp.zeros((1, Tc), jnp.int32), jnp.ones((1, 2 * Tc, 1)), jnp.zeros((1, Tt), jnp.int32), jnp.ones((1, Tt, 1)),
            jnp.zeros((1, Ts, 1025)), jnp.ones((1, Ts, 1)), jnp.asarray(nearest_index(2 * Tc, config.upsample))[None],
            jnp.ones((1, Tf, 1)), jnp.zeros((1, Tf, config.mel_dim)), jnp.zeros((1, Tf, config.mel_dim)),
            jnp.zeros((1,)), jnp.zeros((1,)))
    return nn.meta.unbox(jax.jit(lambda k: model.init(k, *args)["params"])(rng))
