"""ERes2NetV2 speaker-verification encoder (v2Pro / v2ProPlus) in Flax linen (docs/sv.md).

Computes the original's ``ERes2NetV2.forward3``: a 3x3 stem, four residual stages of Res2Net-style
blocks (stages 3 and 4 fuse their sub-bands with attentional feature fusion, AFF), a strided 3x3
downsampling of stage 3 fused with stage 4, then the fused map flattened channel-major over
(channels, frequency) and averaged over time: ``[B, 8 m_channels expansion (feat_dim / 8)]``
(20480 for the released model). The pooling / ``seg_1`` embedding head is not part of ``forward3``
and is not built here. BatchNorm runs in inference mode on the ``batch_stats`` collection.

Layout: features ``[B, T, F]`` become ``[B, T, F, C]`` (time is the conv "height"). The original's
block activation is ``Hardtanh(0, 20)`` (its class named ``ReLU``); only the stem uses a true ReLU.

Padding: rows of a right-padded batch carry their valid frame counts ``frames``; before every conv
that reaches across time (the 3x3 ones) the frames past a row's end are set to zero, which is what
the original's zero padding shows a solo row there, and the final time average runs over the valid
frames only. Every other op is pointwise in time (1x1 convs, BatchNorm, AFF), and a stride-2 stage
maps ``t`` valid frames to ``ceil(t / 2)`` exactly as the solo row's shapes do. So each row equals
its solo result, for any amount of padding.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

# ERes2NetV2(baseWidth=24, scale=4, expansion=4) as GPT-SoVITS builds it (sv.py), other values default
FULL = dict(
    m_channels=64,
    base_width=24,
    scale=4,
    expansion=4,
    num_blocks=(3, 4, 6, 3),
    feat_dim=80,
    embedding_size=192,  # the unused seg_1 head; kept for exporting a strict-loadable state dict
)
BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
ACT_MAX = 20.0  # the blocks' "ReLU" is Hardtanh(0, 20)
AFF_REDUCTION = 4


def sv_config(**overrides) -> ml_collections.ConfigDict:
    """Typed config; defaults are the released ``pretrained_eres2netv2w24s4ep4`` model."""
    cfg = ml_collections.ConfigDict(dict(FULL))
    cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return cfg


def stage_frames(frames, stages: int = 3):
    """Valid time steps after ``stages`` stride-2 stages: ``t -> ceil(t / 2)`` each."""
    t = np.asarray(frames)
    for _ in range(stages):
        t = (t + 1) // 2
    return t


def embedding_dim(cfg) -> int:
    """Width of ``forward3``: channels of the last stage times its frequency rows."""
    freq = int(stage_frames(cfg.feat_dim))
    return cfg.m_channels * 8 * cfg.expansion * freq


def block_width(planes: int, base_width: int) -> int:
    return math.floor(planes * (base_width / 64.0))


def _act(x):
    return jnp.clip(x, 0.0, ACT_MAX)


def _bn(name: str):
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


def _conv(features: int, kernel: int, stride: int = 1, bias: bool = False, name: str | None = None):
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=bias, name=name)


def _masked(x, mask):
    """Zero the frames past each row's end (``mask`` [B, T] bool, or None for unpadded input)."""
    return x if mask is None else jnp.where(mask[:, :, None, None], x, 0.0)


def _downsample_mask(mask):
    return None if mask is None else mask[:, ::2]


class AFF(nn.Module):
    """Attentional feature fusion: ``a = 1 + tanh(local_att(cat(x, y)))``, ``x a + y (2 - a)``."""

    channels: int

    @nn.compact
    def __call__(self, x, y):
        inter = self.channels // AFF_REDUCTION
        a = jnp.concatenate([x, y], axis=-1)
        a = _conv(inter, 1, bias=True, name="local_att_0")(a)
        a = nn.silu(_bn("local_att_1")(a))
        a = _conv(self.channels, 1, bias=True, name="local_att_3")(a)
        a = 1.0 + jnp.tanh(_bn("local_att_4")(a))
        return x * a + y * (2.0 - a)


class Block(nn.Module):
    """``BasicBlockERes2NetV2`` (``fuse=False``) or ``BasicBlockERes2NetV2AFF`` (``fuse=True``)."""

    in_planes: int
    planes: int
    stride: int
    base_width: int
    scale: int
    expansion: int
    fuse: bool

    @nn.compact
    def __call__(self, x, mask):
        """``x`` [B, T, F, in_planes], ``mask`` [B, T] (or None) at the input's resolution."""
        width = block_width(self.planes, self.base_width)
        out_mask = _downsample_mask(mask) if self.stride == 2 else mask
        h = _act(_bn("bn1")(_conv(width * self.scale, 1, self.stride, name="conv1")(x)))
        ys = []
        for i in range(self.scale):
            part = h[..., i * width:(i + 1) * width]
            if i == 0:
                sp = part
            elif self.fuse:
                sp = AFF(width, name=f"fuse_models_{i - 1}")(sp, part)
            else:
                sp = sp + part
            sp = _conv(width, 3, name=f"convs_{i}")(_masked(sp, out_mask))
            sp = _act(_bn(f"bns_{i}")(sp))
            ys.append(sp)
        out = _bn("bn3")(_conv(self.planes * self.expansion, 1, name="conv3")(jnp.concatenate(ys, axis=-1)))
        if self.stride != 1 or self.in_planes != self.planes * self.expansion:
            x = _bn("shortcut_1")(_conv(self.planes * self.expansion, 1, self.stride, name="shortcut_0")(x))
        return _act(out + x), out_mask


class ERes2NetV2(nn.Module):
    """``forward3`` of the original ERes2NetV2: ``[B, T, feat_dim]`` fbank -> ``[B, embedding_dim]``.

    ``frames`` [B]: valid frames per row of a right-padded batch (None: every row is full). Stage
    outputs are sown into ``intermediates`` (``[B, T, F, C]``): ``stem``, ``layer1``..``layer4``, ``out3_ds``,
    ``fuse_out34`` (the original's variable names).
    """

    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, feats, frames=None):
        cfg = self.cfg
        b, t, _ = feats.shape
        mask = None if frames is None else jnp.arange(t)[None, :] < jnp.asarray(frames)[:, None]
        x = _masked(feats[..., None].astype(jnp.float32), mask)
        x = nn.relu(_bn("bn1")(_conv(cfg.m_channels, 3, name="conv1")(x)))
        self.sow("intermediates", "stem", x)
        stages = {}
        for name, in_planes, planes, stride, fuse in block_specs(cfg):
            x, mask = Block(in_planes, planes, stride, cfg.base_width, cfg.scale, cfg.expansion, fuse,
                            name=name)(x, mask)
            stages[name.split("_")[0]] = (x, mask)
        for stage, (out, _) in stages.items():
            self.sow("intermediates", stage, out)
        (out3, mask3), (out4, mask4) = stages["layer3"], stages["layer4"]
        out3_ds = _conv(cfg.m_channels * 8 * cfg.expansion, 3, 2, name="layer3_ds")(_masked(out3, mask3))
        self.sow("intermediates", "out3_ds", out3_ds)
        fused = AFF(cfg.m_channels * 8 * cfg.expansion, name="fuse34")(out4, out3_ds)
        self.sow("intermediates", "fuse_out34", fused)
        if mask4 is None:
            pooled = jnp.mean(fused, axis=1)
        else:
            count = jnp.sum(mask4, axis=1).astype(fused.dtype)
            pooled = jnp.sum(_masked(fused, mask4), axis=1) / count[:, None, None]
        # [B, F, C] -> channel-major flatten, as torch's flatten(1, 2) of [B, C, F]
        return jnp.swapaxes(pooled, 1, 2).reshape(b, -1)


def block_specs(cfg) -> Sequence[tuple[str, int, int, int, bool]]:
    """``(name, in_planes, planes, stride, fuse)`` of every block, in the original's order."""
    out, in_planes = [], cfg.m_channels
    for stage, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2))):
        planes = cfg.m_channels * mult
        for j in range(cfg.num_blocks[stage]):
            out.append((f"layer{stage + 1}_{j}", in_planes, planes, stride if j == 0 else 1, stage >= 2))
            in_planes = planes * cfg.expansion
    return out
