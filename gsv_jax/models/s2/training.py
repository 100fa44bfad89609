"""Generator training forward of SoVITS v1/v2 (docs/s2.md) plus the tensors the losses need (docs/training.md).

Runs ``SynthesizerTrn.__call__`` (reference encoder, frozen ``ssl_proj`` + codebook in eval
semantics, text encoder, posterior encoder ``enc_q``, flow, random segment, HiFi-GAN) with its two
random draws made explicit so they can be injected:

* ``enc_q_noise [B, T, inter]``: the standard normal of ``z = m_q + noise * exp(logs_q)``;
* ``rand_slice_u [B]``: the uniforms of ``rand_slice_segments``; start frame
  ``ids = floor(u * (spec_len - segment + 1))``.

Both are drawn from ``rng`` when not given. Batches are channels-last:
``ssl [B, T, 768]``, ``spec [B, T, 1025]``, ``wav [B, N]``, ``text [B, Tt]`` + lengths; v2Pro* also
``sv_emb [B, 20480]`` (each utterance's speaker embedding, fused into ``ge`` as the original's forward).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gsv_jax import audio
from gsv_jax.models.s2.synthesizer import SynthesizerTrn, rand_slice_ids, slice_segments


def generator_forward(model: SynthesizerTrn, params, batch: dict, rng=None, *, enc_q_noise=None, rand_slice_u=None,
                      mel_cfg: dict | None = None, codebook=None, vq_draws=None) -> dict:
    """One training forward. ``model`` must be built with ``weight_norm=True, with_enc_q=True``
    (``deterministic=False`` for dropout, drawn from ``rng``).

    Returns a dict: ``y_hat [B, seg*hop]``, ``y_slice`` (the matching real audio), ``y_hat_mel`` /
    ``y_mel`` ``[B, seg, n_mels]`` (fp32), ``ids``, ``mask [B, T, 1]``, ``z, z_p, m_p, logs_p, m_q,
    logs_q [B, T, inter]``, ``ge [B, 1, gin]``, ``x`` (text-encoder output).

    ``config.freeze_quantizer=False`` (pretraining): ``codebook`` is the model's ``codebook`` collection
    (the EMA statistics) and the result also has ``kl_ssl``, ``codes``, ``codebook_embed`` and
    ``codebook_stats`` (see ``SynthesizerTrn.__call__``); the codebook's random rows come from
    ``rng`` (or ``vq_draws``).
    """
    c = model.config
    mel_cfg = dict(mel_cfg or {})
    spec = batch["spec"]
    B, T = spec.shape[0], spec.shape[1]
    seg = c.segment_size
    if T < seg:
        raise ValueError(f"spectrogram batch has {T} frames but the training segment is {seg}: "
                         f"drop clips shorter than {seg} frames ({seg * c.hop / audio.MODEL_SR:.2f} s) from the data")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    k_noise, k_slice, k_drop = jax.random.split(rng, 3)
    if enc_q_noise is None:
        enc_q_noise = jax.random.normal(k_noise, (B, T, c.inter_channels), jnp.float32)
    if rand_slice_u is None:
        rand_slice_u = jax.random.uniform(k_slice, (B,), jnp.float32)
    ids = rand_slice_ids(jnp.asarray(rand_slice_u, jnp.float32), batch["spec_lens"], seg)
    variables = {"params": params} if codebook is None else {"params": params, "codebook": codebook}
    o = model.apply(variables, batch["ssl"], spec, batch["spec_lens"], batch["text"], batch["text_lens"],
                    enc_q_noise=enc_q_noise, slice_ids=ids, sv_emb=batch.get("sv_emb"), vq_draws=vq_draws,
                    rngs={"dropout": k_drop, "vq": jax.random.fold_in(rng, 0x5651)})
    y_hat = o["y_hat"].reshape(B, -1).astype(jnp.float32)
    n_fft = mel_cfg.get("filter_length", 2048)
    n_mels = mel_cfg.get("n_mel_channels", 128)
    sr = mel_cfg.get("sampling_rate", audio.MODEL_SR)
    fmin, fmax = mel_cfg.get("mel_fmin", 0.0), mel_cfg.get("mel_fmax", None)
    # mel of the sliced spectrogram == slice of the mel (per-frame op), 32 frames instead of all
    spec_slice = slice_segments(spec.astype(jnp.float32), ids, seg)
    y_mel = audio.spec_to_mel(jnp.swapaxes(spec_slice, 1, 2), n_fft, n_mels, sr, fmin, fmax)
    y_hat_mel = audio.mel_spectrogram(y_hat, n_fft, n_mels, sr, mel_cfg.get("hop_length", c.hop),
                                      mel_cfg.get("win_length", 2048), fmin, fmax)
    hop = c.hop
    y_slice = jax.vmap(lambda w, i: jax.lax.dynamic_slice_in_dim(w, i * hop, seg * hop))(
        batch["wav"].astype(jnp.float32), ids)
    return dict(y_hat=y_hat, y_slice=y_slice, y_mel=jnp.swapaxes(y_mel, 1, 2), y_hat_mel=jnp.swapaxes(y_hat_mel, 1, 2),
                ids=ids, mask=o["mask"], z=o["z"], z_p=o["z_p"], m_p=o["m_p"], logs_p=o["logs_p"], m_q=o["m_q"],
                logs_q=o["logs_q"], ge=o["ge"], x=o["x"],
                **{k: o[k] for k in ("kl_ssl", "codes", "codebook_embed", "codebook_stats") if k in o})
