"""S2 (SoVITS v1/v2) GAN training on the generic machinery (docs/training.md, "S2 training").

Parameters are one tree ``{"g": generator, "d": discriminator}``; the optimizer state is
``{"g": ..., "d": ...}``, each an ``optax.multi_transform`` over the whole tree (so every
statistic keeps its parameter's path and sharding):

* G: AdamW (betas 0.8/0.99, eps 1e-9, decoupled weight decay 0.01) with the original's groups:
  base lr, ``enc_p.text_embedding`` / ``enc_p.encoder_text`` / ``enc_p.mrte`` at
  ``lr * text_low_lr_rate``; ``ssl_proj`` and the codebook are frozen (no update, no decay,
  as torch skips parameters without a gradient);
* D: AdamW, one group.

``config.model.freeze_quantizer`` (default true, as the original's configs) switches fine-tuning
(the above) to pretraining: ``ssl_proj`` joins the base group and the codebook is learned by its
own rule (k-means init, EMA, expiry; ``gsv_jax.models.s2.quantizer``), not by the optimizer; the
commitment loss enters the generator loss with weight 1 (``s2_train.py``: ``kl_ssl * 1``). The
codebook statistics are a third entry of the parameter tree, ``params["codebook"]`` (the model's
``codebook`` collection: ``inited``, ``cluster_size``, ``embed_avg``), so they are checkpointed with
the rest; the learned ``embed`` is written into ``params["g"]`` after every step.

The learning rate decays per epoch, ``lr0 * 0.999875 ** epoch`` with the 1-based epoch the
batch carries (``batch["epoch"]``), i.e. the original's pre-stepped ``ExponentialLR``.

One jitted step (:meth:`S2Task.make_step_fn`, which the loop picks up instead of its generic
single-loss step) does exactly the original iteration: generator forward (kept as a VJP), D loss
on ``(y, stop_grad(y_hat))`` -> D update, G loss with the *updated* D -> G gradient through
the stored VJP -> G update.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gsv_jax.configs import read_section
from gsv_jax.convert.s2_discriminator import discriminator_params_to_state_dict, discriminator_state_dict_to_params
from gsv_jax.models.s2 import quantizer as vq
from gsv_jax.models.s2.discriminator import MultiPeriodDiscriminator
from gsv_jax.models.s2.synthesizer import S2ModelConfig, SynthesizerTrn
from gsv_jax.models.s2.training import generator_forward
from gsv_jax.train import s2_losses as L
from gsv_jax.train.loop import LoopConfig
from gsv_jax.train.task import Task, TrainingSetupError, data_or_setup_error

LOW_LR_PREFIXES = (("enc_p", "text_embedding"), ("enc_p", "encoder_text"), ("enc_p", "mrte"))
FROZEN_PREFIXES = (("ssl_proj",), ("quantizer",))
PRETRAIN_FROZEN_PREFIXES = (("quantizer",),)  # freeze_quantizer=False: the codebook has its own update
COMMIT_LOSS_WEIGHT = 1.0  # s2_train.py: loss_gen_all = ... + kl_ssl * 1 + ...
CODEBOOK_PATH = ("quantizer", "vq", "layers_0", "_codebook")
BUFFER_PREFIX = "quantizer.vq.layers.0._codebook."


@dataclasses.dataclass(frozen=True)
class S2OptimConfig:
    """``config.optim`` of S2 training: the original ``s2.json`` train section (AdamW, per-epoch decay, loss weights)."""

    learning_rate: float = 1e-4
    betas: tuple = (0.8, 0.99)
    eps: float = 1e-9
    weight_decay: float = 0.01  # torch AdamW default, decoupled
    lr_decay: float = 0.999875
    text_low_lr_rate: float = 0.4
    c_mel: float = 45.0
    c_kl: float = 1.0
    epoch_offset: int = 0  # epochs already done by the checkpoint we start from (original ``iteration``)

    @classmethod
    def from_config(cls, c) -> S2OptimConfig:
        return read_section(cls, c)


@dataclasses.dataclass(frozen=True)
class S2TrainConfig(LoopConfig):
    """``config.train`` of S2 training (the GAN step has no accumulation, clipping or remat options)."""

    task: str = "s2"
    batch_size: int = 8  # global batch (all hosts)
    num_steps: int = 10000
    save_every: int = 1000
    dropout: bool = True
    disc_width_div: int = 1  # discriminator widths / this (tests use 4; 1 = the original's D)
    param_sharding: str = "replicated"  # or "logical" (see S2Task)


def _label_g(path, frozen=FROZEN_PREFIXES) -> str:
    names = tuple(getattr(k, "key", getattr(k, "name", None)) for k in path)
    if names[0] == "codebook":
        return "codebook"
    if any(names[1:1 + len(p)] == p for p in frozen):
        return "g_frozen"
    if any(names[1:1 + len(p)] == p for p in LOW_LR_PREFIXES):
        return "g_low"
    return "g_base"


def param_labels(params, frozen=FROZEN_PREFIXES):
    """``{"g": ..., "d": ..., "codebook": ...}`` -> label tree (``g_base``, ``g_low``, ``g_frozen``, ``d``,
    ``codebook``); ``frozen``: the generator prefixes without an optimizer update."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "d" if getattr(p[0], "key", None) == "d" else _label_g(p, frozen), params)


def _adamw(o: S2OptimConfig, factor: float = 1.0):
    parts = [optax.scale_by_adam(b1=o.betas[0], b2=o.betas[1], eps=o.eps), optax.add_decayed_weights(o.weight_decay)]
    if factor != 1.0:
        parts.append(optax.scale(factor))
    return optax.chain(*parts)  # direction only; the step multiplies by -lr(epoch)


def make_gan_tx(o: S2OptimConfig, frozen=FROZEN_PREFIXES):
    """``(tx, tx_g, tx_d)``: ``tx.init`` builds the joint state; the step calls ``tx_g``/``tx_d``."""
    zero = optax.set_to_zero()
    labels = lambda p: param_labels(p, frozen)
    tx_g = optax.multi_transform({"g_base": _adamw(o), "g_low": _adamw(o, o.text_low_lr_rate), "g_frozen": zero,
                                  "d": zero, "codebook": zero}, labels)
    tx_d = optax.multi_transform({"g_base": zero, "g_low": zero, "g_frozen": zero, "d": _adamw(o), "codebook": zero},
                                 labels)

    def init(params):
        return {"g": tx_g.init(params), "d": tx_d.init(params)}

    def update(*_a, **_k):
        raise NotImplementedError("the S2 GAN optimizer is applied by S2Task.make_step_fn (D then G)")

    return optax.GradientTransformation(init, update), tx_g, tx_d


def lr_at_epoch(o: S2OptimConfig, epoch):
    """Learning rate of (1-based) ``epoch``: ``lr0 * decay ** (epoch + epoch_offset)``."""
    return o.learning_rate * jnp.power(jnp.float32(o.lr_decay), jnp.asarray(epoch, jnp.float32) + o.epoch_offset)


class S2Task(Task):
    name = "s2"

    def __init__(self, model_cfg: S2ModelConfig, optim: S2OptimConfig | None = None, *,
                 dropout: bool = S2TrainConfig.dropout, mel_cfg: dict | None = None,
                 disc_width_div: int = S2TrainConfig.disc_width_div,
                 param_sharding: str = S2TrainConfig.param_sharding):
        if param_sharding not in ("replicated", "logical"):
            raise ValueError(f"param_sharding={param_sharding!r}: use 'replicated' or 'logical'")
        # "replicated" (default): pure data parallelism over every mesh axis that divides the batch.
        # S2 is small (~80 M + 50 M parameters), and with its conv weights split over fsdp/tensor
        # XLA's partitioner computed wrong generator gradients (Shardy, jax 0.10.2: up to 50 % off on
        # the input convs) or crashed (GSPMD: convolution_handler shape check); "logical" keeps the
        # model's logical axes for when that is fixed.
        self.param_sharding = param_sharding
        self.config = model_cfg
        self.optim = optim or S2OptimConfig()
        # exact_ref_lengths=False: ref_enc sees padded frames as the original training batch does (parity)
        self.model = SynthesizerTrn(model_cfg, weight_norm=True, with_enc_q=True, deterministic=not dropout,
                                    exact_ref_lengths=False)
        self.disc = MultiPeriodDiscriminator(model_cfg.version, disc_width_div)
        self.mel_cfg = dict(mel_cfg or {})
        self.trainable_quantizer = not model_cfg.freeze_quantizer
        self.tx, self.tx_g, self.tx_d = make_gan_tx(
            self.optim, PRETRAIN_FROZEN_PREFIXES if self.trainable_quantizer else FROZEN_PREFIXES)

    @classmethod
    def from_config(cls, config) -> S2Task:
        from gsv_jax.data.s2_pipeline import S2DataConfig

        model_cfg = S2ModelConfig.from_mapping(config.model)
        optim = read_section(S2OptimConfig, config.get("optim", None))
        train = read_section(S2TrainConfig, config.get("train", None))
        data = read_section(S2DataConfig, config.get("data", None))
        return cls(model_cfg, optim, dropout=bool(train.dropout), mel_cfg=data.mel_config(),
                   disc_width_div=int(train.disc_width_div), param_sharding=str(train.param_sharding))

    # -- the Task interface ----------------------------------------------------------------------
    def init_params(self, rng):
        c = self.config
        kg, kd = jax.random.split(rng)
        T = c.segment_size
        sv = jnp.zeros((1, c.sv_dim)) if c.speaker_verification else None  # v2Pro*: the speaker embedding
        variables = self.model.init({"params": kg, "dropout": kg}, jnp.zeros((1, T, c.ssl_dim)),
                                    jnp.zeros((1, T, c.spec_channels)), jnp.array([T]), jnp.zeros((1, 3), jnp.int32),
                                    jnp.array([3]), slice_ids=jnp.zeros((1,), jnp.int32), sv_emb=sv)
        g = variables["params"]
        d = self.disc.init(kd, jnp.zeros((1, 4096), jnp.float32))["params"]
        # a fresh trainable codebook is uninitialised (k-means on the first batch); a frozen one is used as is
        codebook = (dict(variables["codebook"]) if self.trainable_quantizer
                    else nest_codebook(vq.frozen_stats(codebook_embed(nn.meta.unbox(g)))))
        params = {"g": g, "d": d, "codebook": codebook}
        return nn.meta.unbox(params) if self.param_sharding == "replicated" else params

    def batch_spec(self, batch_size: int, frames: int = 200, text_len: int = 64) -> dict:
        c, f32, i32 = self.config, jnp.float32, jnp.int32
        S = jax.ShapeDtypeStruct
        return {"ssl": S((batch_size, frames, c.ssl_dim), f32), "spec": S((batch_size, frames, c.spec_channels), f32),
                "spec_lens": S((batch_size,), i32), "wav": S((batch_size, frames * c.hop), f32),
                "text": S((batch_size, text_len), i32), "text_lens": S((batch_size,), i32),
                "epoch": S((batch_size,), i32),
                **({"sv_emb": S((batch_size, c.sv_dim), f32)} if c.speaker_verification else {})}

    def loss_fn(self, params, batch, rng, train: bool = True):
        """Generator total loss against the current D (evaluation / logging; training uses the GAN step)."""
        out = self.g_forward(params["g"], batch, rng, codebook=params.get("codebook"))
        loss, aux = self.g_loss(out, params["d"])
        return loss, aux

    # -- pieces ----------------------------------------------------------------------------------
    def prepare_batch(self, batch):
        """Float32 SSL; the linear spectrogram from ``wav`` when the batch has none (on device)."""
        batch = dict(batch)
        batch["ssl"] = jnp.asarray(batch["ssl"], jnp.float32)
        if "spec" not in batch:
            from gsv_jax.data.s2_pipeline import S2DataConfig, batch_spectrogram

            m = self.mel_cfg
            batch["spec"] = batch_spectrogram(batch["wav"], batch["wav_lens"], batch["ssl"].shape[1],
                                              m.get("filter_length", S2DataConfig.filter_length), self.config.hop,
                                              m.get("win_length", S2DataConfig.win_length))
        return batch

    def g_forward(self, params_g, batch, rng, enc_q_noise=None, rand_slice_u=None, *, codebook=None, vq_draws=None):
        """Generator forward; ``codebook`` (``params["codebook"]``) and ``vq_draws`` are read only when
        the quantizer is trainable."""
        batch = self.prepare_batch(batch)
        if self.trainable_quantizer and codebook is None:
            raise ValueError("freeze_quantizer=False needs the codebook statistics: pass params['codebook']")
        return generator_forward(self.model, params_g, batch, rng, enc_q_noise=enc_q_noise,
                                 rand_slice_u=rand_slice_u, mel_cfg=self.mel_cfg,
                                 codebook=codebook if self.trainable_quantizer else None, vq_draws=vq_draws)

    def discriminate(self, params_d, y, y_hat):
        """D on real and generated audio in one pass: ``(real logits, fake logits, real fmaps, fake fmaps)``."""
        B = y.shape[0]
        logits, fmaps = self.disc.apply({"params": params_d}, jnp.concatenate([y, y_hat], 0))
        split = lambda x: (x[:B], x[B:])
        real, fake = zip(*[split(x) for x in logits])
        f_r = [[x[: x.shape[0] // 2] for x in fm] for fm in fmaps]
        f_g = [[x[x.shape[0] // 2:] for x in fm] for fm in fmaps]
        return list(real), list(fake), f_r, f_g

    def d_loss(self, params_d, y, y_hat):
        real, fake, _, _ = self.discriminate(params_d, y, jax.lax.stop_gradient(y_hat))
        loss, r, g = L.discriminator_loss(real, fake)
        return loss, {"loss_disc": loss, "losses_disc_r": r, "losses_disc_g": g, "d_real": real, "d_fake": fake}

    def g_loss(self, out, params_d):
        """Generator loss. D runs on the real and the generated slice separately (not as one
        concatenated batch, as :meth:`discriminate` does): the real half carries no generator
        gradient, so the backward pass then computes D's input gradient for the generated half only."""
        o = self.optim
        real, f_r = self.disc.apply({"params": params_d}, jax.lax.stop_gradient(out["y_slice"]))
        fake, f_g = self.disc.apply({"params": params_d}, out["y_hat"])
        loss_mel = L.mel_loss(out["y_mel"], out["y_hat_mel"]) * o.c_mel
        loss_kl = L.kl_loss(out["z_p"], out["logs_q"], out["m_p"], out["logs_p"], out["mask"]) * o.c_kl
        fm_terms = L.feature_terms(f_r, f_g)
        loss_fm = 2.0 * jnp.sum(fm_terms)
        loss_gen, losses_gen = L.generator_loss(fake)
        # frozen quantizer in eval mode: commitment loss 0 (docs/s2.md "Quantizer")
        kl_ssl = out["kl_ssl"] * COMMIT_LOSS_WEIGHT if "kl_ssl" in out else jnp.zeros((), jnp.float32)
        total = loss_gen + loss_fm + loss_mel + kl_ssl + loss_kl
        return total, {"loss_gen_all": total, "loss_gen": loss_gen, "losses_gen": losses_gen, "loss_fm": loss_fm,
                       "fm_terms": fm_terms, "loss_mel": loss_mel, "loss_kl": loss_kl, "kl_ssl": kl_ssl,
                       "g_real": real, "g_fake": fake}

    def gan_update(self, params, opt_state, batch, rng, *, enc_q_noise=None, rand_slice_u=None, vq_draws=None,
                   full_aux=False):
        """One original iteration. Returns ``(params, opt_state, metrics)`` (``full_aux``: plus the
        forward outputs, gradients and per-term losses, for tests)."""
        o = self.optim
        lr = lr_at_epoch(o, jnp.max(batch["epoch"])) if "epoch" in batch else lr_at_epoch(o, 1)
        diff_keys = ("y_hat", "y_hat_mel", "z_p", "logs_q", "m_p", "logs_p")
        if self.trainable_quantizer:
            diff_keys += ("kl_ssl",)
        extra = {k: params[k] for k in ("codebook",) if k in params}  # no gradient, no optimizer update
        no_update = jax.tree.map(jnp.zeros_like, extra)

        def fwd(pg):
            out = self.g_forward(pg, batch, rng, enc_q_noise, rand_slice_u, codebook=extra.get("codebook"),
                                 vq_draws=vq_draws)
            return {k: out[k] for k in diff_keys}, {k: v for k, v in out.items() if k not in diff_keys}

        diff, g_vjp, rest = jax.vjp(fwd, params["g"], has_aux=True)
        out = {**diff, **rest}
        # discriminator step
        (loss_d, aux_d), grads_d = jax.value_and_grad(self.d_loss, has_aux=True)(params["d"], out["y_slice"],
                                                                                  out["y_hat"])
        zeros_g = jax.tree.map(jnp.zeros_like, params["g"])
        upd, st_d = self.tx_d.update({"g": zeros_g, "d": grads_d, **no_update}, opt_state["d"], params)
        params_d = jax.tree.map(lambda p, u: p - lr * u, params["d"], upd["d"])
        # generator step against the updated discriminator
        def g_obj(dv):
            return self.g_loss({**dv, **rest}, params_d)

        (loss_g, aux_g), cot = jax.value_and_grad(g_obj, has_aux=True)(diff)
        (grads_g,) = g_vjp(cot)
        zeros_d = jax.tree.map(jnp.zeros_like, params_d)
        upd, st_g = self.tx_g.update({"g": grads_g, "d": zeros_d, **no_update}, opt_state["g"],
                                     {"g": params["g"], "d": params_d, **extra})
        params_g = jax.tree.map(lambda p, u: p - lr * u, params["g"], upd["g"])
        if self.trainable_quantizer:  # the codebook's own update (EMA / expiry), not the optimizer's
            params_g = with_codebook_embed(params_g, out["codebook_embed"])
            extra = {**extra, "codebook": nest_codebook(out["codebook_stats"])}
        metrics = {"loss": loss_g, "loss_disc": loss_d, "loss_gen": aux_g["loss_gen"], "loss_fm": aux_g["loss_fm"],
                   "loss_mel": aux_g["loss_mel"], "loss_kl": aux_g["loss_kl"], "grad_norm_g": optax.global_norm(grads_g),
                   "grad_norm_d": optax.global_norm(grads_d), "lr": lr}
        if self.trainable_quantizer:
            metrics.update(kl_ssl=aux_g["kl_ssl"], **vq.code_usage(out["codes"], self.config.codebook_bins))
        if full_aux:
            metrics.update(out=out, aux_d=aux_d, aux_g=aux_g, grads_g=grads_g, grads_d=grads_d)
        return {"g": params_g, "d": params_d, **extra}, {"g": st_g, "d": st_d}, metrics

    def make_step_fn(self, tx=None, schedule=None, **_):
        """The loop's step: ``(state, batch, rng) -> (state, metrics)`` (``tx``/``schedule`` unused)."""
        from gsv_jax import sharding as shd  # noqa: F401 - the loop traces under the axis rules

        def step(state, batch, rng):
            rng = jax.random.fold_in(rng, state.step)
            params, opt_state, metrics = self.gan_update(state.params, state.opt_state, batch, rng)
            return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

        return step

    # -- checkpoints in the original formats -----------------------------------------------------
    def generator_template(self):
        """The generator's parameter shapes (unboxed ShapeDtypeStructs; weight norm as ``weight_g/weight_v``)."""
        if getattr(self, "_g_template", None) is None:  # traced once per task
            self._g_template = nn.meta.unbox(jax.eval_shape(self.init_params, jax.random.PRNGKey(0)))["g"]
        return self._g_template

    def params_from_original(self, g_path, d_path=None, rng=None):
        """Plain ``{"g", "d"}`` parameters from ``G_*.pth`` / pretrained ``s2G*.pth`` (enc_q from the file
        or freshly initialised when absent, e.g. exported weights) and ``D_*.pth`` / ``s2D*.pth``
        (fresh when ``d_path`` is None). Returns ``(params, info)``; ``info["iteration"]`` is the
        original's epoch counter (0 for pretrained files)."""
        from gsv_jax.convert import s2 as conv

        rng = jax.random.PRNGKey(0) if rng is None else rng
        fresh = None
        sd, hparams, meta = conv.read_s2_file(g_path)
        version = meta["detected_version"]
        conv.refuse_unsupported(g_path, version)
        if version != self.config.version and not _config_decides(version, self.config.version, hparams, meta):
            raise TrainingSetupError(f"{g_path} is a SoVITS {version} model but the config trains "
                                     f"{self.config.version}; use --config s2_{version.lower()}")
        g, buffers = conv.state_dict_to_params(sd, self.generator_template(), where=str(g_path))
        if "enc_q" not in g:
            fresh = nn.meta.unbox(self.init_params(rng))
            g["enc_q"] = jax.device_get(fresh["g"]["enc_q"])
        if d_path is not None:
            d = discriminator_state_dict_to_params(conv.read_discriminator_state(d_path), self.config.version,
                                                   where=str(d_path), width_div=self.disc.width_div)
        else:
            fresh = fresh or nn.meta.unbox(self.init_params(rng))
            d = jax.device_get(fresh["d"])
        it = meta.get("iteration")
        codebook = codebook_from_buffers(buffers, codebook_embed(g))
        params = jax.tree.map(lambda x: np.asarray(x, np.float32), {"g": g, "d": d, "codebook": codebook})
        return params, {"iteration": int(it) if isinstance(it, (int, float)) else 0, "buffers": buffers,
                        "hparams": hparams}

    def generator_state_dict(self, params_g, *, dtype=np.float16, with_enc_q: bool = False, buffers=None) -> dict:
        """The original's generator state dict (weight norm as ``weight_g/weight_v``); ``buffers`` the
        quantizer's (:func:`codebook_buffers`; ``inited`` 1, counts 1 when None)."""
        from gsv_jax.convert import s2 as conv

        g = jax.tree.map(lambda a: np.asarray(jax.device_get(a), np.float32), nn.meta.unbox(params_g))
        wn_layers = {conv.path_to_torch_key(tuple(k.key for k in path[:-1]))
                     for path, _ in jax.tree_util.tree_leaves_with_path(self.generator_template())
                     if path[-1].key == "weight_g"}
        buffers = buffers or conv.default_buffers(np.asarray(g["quantizer"]["vq"]["layers_0"]["_codebook"]["embed"]))
        return conv.params_to_state_dict(g, wn_layers, dtype=dtype, drop_enc_q=not with_enc_q, buffers=buffers)

    def write_weights(self, params_g, path, *, info: str, buffers=None, hparams=None) -> str:
        """The exported weights (fp16, no enc_q, ``HParams`` config) that the original WebUI and ``load_s2`` read."""
        from gsv_jax.convert import s2 as conv

        hps = hparams if hparams is not None else conv.make_hparams(self.config.to_dict(), self.config.version)
        conv.write_s2_export(path, self.generator_state_dict(params_g, buffers=buffers), hps, info=info,
                             version=self.config.version)
        return str(path)

    def export_original(self, params, workdir, step: int, epoch: int = 0, *, name: str = "gsv_jax",
                        buffers=None, hparams=None) -> dict:
        """Write ``G_<step>.pth`` / ``D_<step>.pth`` (the original's training checkpoints, fp32, optimizer
        ``None`` -- the original then starts a fresh AdamW) and the exported weights
        ``<name>_e<epoch>_s<step>.pth`` (fp16, no enc_q) that the original WebUI loads."""
        from gsv_jax.io.torch_io import save_torch_file

        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if "codebook" in params:  # the state's statistics are the current ones (learned or as loaded)
            buffers = codebook_buffers(params["codebook"])
        g_sd = self.generator_state_dict(params["g"], dtype=np.float32, with_enc_q=True, buffers=buffers)
        d_sd = discriminator_params_to_state_dict(params["d"], np.float32)
        paths = {"G": workdir / f"G_{step}.pth", "D": workdir / f"D_{step}.pth",
                 "weights": workdir / f"{name}_e{epoch}_s{step}.pth"}
        lr = self.optim.learning_rate
        save_torch_file({"model": g_sd, "iteration": int(epoch), "optimizer": None, "learning_rate": lr}, paths["G"])
        save_torch_file({"model": d_sd, "iteration": int(epoch), "optimizer": None, "learning_rate": lr}, paths["D"])
        self.write_weights(params["g"], paths["weights"], info=f"{epoch}epoch_{step}iteration", buffers=buffers,
                           hparams=hparams)
        return {k: str(v) for k, v in paths.items()}

    def export_inference(self, params, path, config=None):
        buffers = codebook_buffers(params["codebook"]) if "codebook" in params else None
        return self.write_weights(params["g"], path, info="gsv_jax export", buffers=buffers)

    # -- run side (train.py) ---------------------------------------------------------------------
    @classmethod
    def check_config(cls, config, workdir, init_from=(), *, data=True):
        super().check_config(config, workdir, init_from, data=data)
        if len(init_from) > 2:
            raise TrainingSetupError(f"--init-from takes a generator and optionally a discriminator file, "
                                     f"got {list(init_from)}")

    @classmethod
    def train(cls, config, workdir: str, init_from: Sequence[str] = (), *, stop_after: int | None = None,
              export_path: str | None = None, export: bool = True):
        """Build the task, data and mesh, run the loop (auto-resume), export to ``export_path``
        (a folder, default ``<workdir>/export``).

        ``init_from``: ``[G.pth]`` or ``[G.pth, D.pth]`` (original training checkpoints or pretrained
        ``s2G*.pth`` / ``s2D*.pth``), used when ``workdir`` has no checkpoint yet; the G file's epoch
        counter continues the learning-rate schedule as the original's resume does.
        """
        from gsv_jax.data.s2_pipeline import make_s2_data
        from gsv_jax.train import checkpoint as ckpt_lib
        from gsv_jax.train.loop import run
        from gsv_jax.train.mesh import mesh_from_config

        training_config(config)
        init_from = [p for p in (init_from or []) if p]
        cls.check_config(config, None, init_from)
        task = cls.from_config(config)
        data = data_or_setup_error(make_s2_data, config)
        mesh = mesh_from_config(config)
        probe = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False, clean_unfinished=False)
        has_ckpt = probe.latest_step() is not None
        probe.close()
        init_params, extra = None, {}
        if init_from:
            from gsv_jax.io.torch_io import CheckpointError

            try:
                it = read_iteration(init_from[0])
                if it:  # the original's resume continues its lr decay from the stored epoch
                    task = cls(task.config, dataclasses.replace(task.optim, epoch_offset=task.optim.epoch_offset + it),
                               dropout=not task.model.deterministic, mel_cfg=task.mel_cfg,
                               disc_width_div=task.disc.width_div, param_sharding=task.param_sharding)
                if not has_ckpt:
                    init_params, extra = task.params_from_original(init_from[0],
                                                                   init_from[1] if len(init_from) > 1 else None)
            except CheckpointError as e:
                raise TrainingSetupError(f"--init-from: {e}") from e
            if init_params is not None and jax.process_index() == 0:
                print(f"fine-tuning from {init_from} (original epoch {extra['iteration']})", flush=True)
        train_cfg = read_section(S2TrainConfig, config.train)
        if jax.process_index() == 0:
            print(f"mesh {dict(mesh.shape)}; {data.batches_per_epoch} batches per epoch", flush=True)
        res = run(task, task.tx, lambda step: 0.0, data, workdir, mesh, train_cfg, init_params=init_params,
                  stop_after=stop_after)
        if export and jax.process_index() == 0 and not res.stopped_by_signal:
            step = int(jax.device_get(res.state.step))
            epoch = int(data.get_state()["epoch"]) + 1 + task.optim.epoch_offset
            paths = task.export_original(jax.device_get(res.state.params), export_path or os.path.join(workdir, "export"),
                                         step, epoch, buffers=extra.get("buffers"), hparams=extra.get("hparams"))
            print(f"exported {paths}", flush=True)
        return res


def codebook_embed(params_g):
    """The codebook ``embed [bins, dim]`` inside the generator parameters."""
    node = params_g
    for k in CODEBOOK_PATH:
        node = node[k]
    return node["embed"]


def with_codebook_embed(params_g, embed):
    """``params_g`` with the codebook ``embed`` replaced (a new tree; the rest shared)."""
    def put(node, path):
        if not path:
            return {**node, "embed": embed.astype(node["embed"].dtype)}
        return {**node, path[0]: put(node[path[0]], path[1:])}

    return put(params_g, CODEBOOK_PATH)


def nest_codebook(stats: dict) -> dict:
    """``{inited, cluster_size, embed_avg}`` -> the ``codebook`` collection tree (the model's paths)."""
    node = dict(stats)
    for k in reversed(CODEBOOK_PATH):
        node = {k: node}
    return node


def flat_codebook(codebook: dict) -> dict:
    node = codebook
    for k in CODEBOOK_PATH:
        node = node[k]
    return dict(node)


def codebook_buffers(codebook: dict) -> dict:
    """``params["codebook"]`` -> the original's buffers ``quantizer.vq.layers.0._codebook.{inited,
    cluster_size, embed_avg}`` (fp32 numpy; ``embed`` itself is a parameter of ``params["g"]``)."""
    return {BUFFER_PREFIX + k: np.asarray(jax.device_get(v), np.float32) for k, v in flat_codebook(codebook).items()}


def codebook_from_buffers(buffers: dict, embed) -> dict:
    """The original's buffers (as read from a file) -> ``params["codebook"]``; a file without them
    gets a frozen codebook's statistics (``inited`` 1, counts 1, ``embed_avg = embed``)."""
    names = [BUFFER_PREFIX + k for k in vq.STATS]
    if not all(n in buffers for n in names):
        return nest_codebook({k: np.asarray(v) for k, v in vq.frozen_stats(embed).items()})
    return nest_codebook({k: np.asarray(buffers[n], np.float32) for k, n in zip(vq.STATS, names)})


def golden_batch_from_torch_layout(g) -> dict:
    """The golden npz's channel-first tensors -> our channels-last batch (tests, tools)."""
    return {"ssl": np.transpose(g["ssl"], (0, 2, 1)).astype(np.float32),
            "spec": np.transpose(g["spec"], (0, 2, 1)).astype(np.float32),
            "spec_lens": np.asarray(g["spec_lens"], np.int32), "wav": np.asarray(g["wav"][:, 0], np.float32),
            "text": np.asarray(g["text"], np.int32), "text_lens": np.asarray(g["text_lens"], np.int32),
            "epoch": np.ones(len(g["spec_lens"]), np.int32)}



def _config_decides(detected: str, configured: str, hparams, meta) -> bool:
    """Whether a generator file's version is really unknown, so the config's version stands: v2Pro and
    v2ProPlus are the same model code with other widths, and a training checkpoint ``G_*.pth`` (or a
    bare state dict) carries no head and no config, only shapes, from which ``detect_s2`` can only
    guess. The original's ``s2_train.py`` never detects: it loads ``logs_s2_<config version>/G_*.pth``
    into the model its config builds (a real width mismatch then fails the shape check)."""
    from gsv_jax import families

    both_pro = families.family(detected).speaker_verification and families.family(configured).speaker_verification
    return bool(both_pro and hparams is None and meta.get("kind") in ("train", "state_dict")
                and meta.get("head") in (None, b"PK"))


def read_iteration(g_path) -> int:
    """The original's epoch counter stored in a ``G_*.pth`` (0 for pretrained / exported files)."""
    from gsv_jax.io.torch_io import load_torch_file

    obj = load_torch_file(g_path)
    return int(obj.get("iteration") or 0) if isinstance(obj, dict) and "model" in obj else 0


def training_config(config=None):
    """``optim``, ``train`` and ``mesh`` sub-configs of S2 training, from their dataclasses' defaults;
    added to ``config`` in place when given (only the missing ones)."""
    from gsv_jax.configs import section
    from gsv_jax.train.mesh import MeshConfig

    optim, train, mesh = section(S2OptimConfig()), section(S2TrainConfig()), section(MeshConfig())
    if config is not None:
        for name, sub in (("optim", optim), ("train", train), ("mesh", mesh)):
            if name not in config:
                config[name] = sub
    return optim, train, mesh
