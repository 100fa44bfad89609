"""Conditional flow matching (``CFM``) of SoVITS v3/v4 and its Euler sampler (docs/v3v4.md).

``CFM.sample`` is ``CFM.inference`` without classifier-free guidance: start from ``noise``, zero the
prompt frames, ``cond`` = the prompt mel in the prompt frames and zeros after; then ``n`` Euler steps
``x += d · DiT(x, cond, t_j, d, mu)`` with ``d = 1/n``, the prompt frames zeroed after every step. The
text/condition embedding and the ``d`` embedding do not depend on the step and are computed once;
the loop is one ``lax.fori_loop`` (``n`` static).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.models.dit import DiT


def euler_times(n_steps: int) -> np.ndarray:
    """The ``t`` of each step as the original forms them: ``t += 1/n`` in Python floats, then float32."""
    d, t, out = 1 / n_steps, 0.0, []
    for _ in range(n_steps):
        out.append(t)
        t = t + d
    return np.asarray(out, np.float32)


class CFM(nn.Module):
    mel_dim: int = 100
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    text_dim: int = 512
    conv_layers: int = 4

    def setup(self):
        self.estimator = DiT(self.dim, self.depth, self.heads, self.dim_head, self.ff_mult, self.mel_dim,
                             self.text_dim, self.conv_layers)

    def __call__(self, x, cond, t, d, mu, mask=None):
        """One velocity evaluation (training form): ``x, cond [B, T, mel]``, ``t, d [B]``, ``mu [B, T, text_dim]``."""
        return self.estimator(x, cond, t, d, mu, mask)

    def sample(self, mu, noise, prompt, prompt_len, n_steps: int, mask=None, times=None):
        """Euler sampling. ``mu [B, T, text_dim]``, ``noise [B, T, mel]`` standard normal, ``prompt
        [B, P, mel]`` (normalised mel, ``P >=`` every ``prompt_len``), ``prompt_len [B]`` int, ``mask
        [B, T, 1]`` valid frames (None: all). ``times [n]``: the step times (default
        :func:`euler_times`). Returns ``x [B, T, mel]`` with zeros in each row's prompt frames."""
        B, T, _ = noise.shape
        in_prompt = (jnp.arange(T)[None, :] < jnp.asarray(prompt_len)[:, None])[..., None]  # [B, T, 1]
        P = prompt.shape[1]
        prompt_full = jnp.pad(prompt, ((0, 0), (0, max(T - P, 0)), (0, 0)))[:, :T]
        cond = jnp.where(in_prompt, prompt_full, 0.0).astype(noise.dtype)
        x = jnp.where(in_prompt, 0.0, noise)
        est = self.estimator
        conditioned = est.condition(cond, mu, mask)
        d = 1.0 / n_steps
        d_emb = est.step_embedding(jnp.full((B,), d, jnp.float32))
        ts = jnp.asarray(euler_times(n_steps) if times is None else times, jnp.float32)

        def body(j, x):
            v = est.velocity(x, jnp.full((B,), ts[j]), d_emb, conditioned, mask)
            return jnp.where(in_prompt, 0.0, x + d * v)

        return jax.lax.fori_loop(0, n_steps, body, x)
