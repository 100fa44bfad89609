"""SoVITS v3/v4 checkpoints, their LoRA fine-tunes and the two vocoders <-> our parameter trees,
without torch (docs/v3v4.md).

* ``s2Gv3.pth`` / ``s2Gv4.pth`` and fine-tuned full exports: ``{"weight", "config", "info"}`` (fp16;
  plain zip, or head ``02``); :func:`read_v3_file`.
* LoRA fine-tunes (head ``03`` v3 / ``04`` v4, ``"lora_rank"``): the LoRA factors of the DiT attention
  projections plus the trainable non-DiT modules; :func:`merge_lora` merges them into a base model's
  state dict as the original (peft ``merge_and_unload``): ``W = W_base + B @ A · (alpha / r)``, alpha = r.
  LoRA files are read only (export writes a full model).
* BigVGAN folder (``config.json`` + ``bigvgan_generator.pt``) and the v4 ``vocoder.pth``; weight norm
  folded at load (:func:`read_bigvgan`, :func:`read_vocoder_v4`).

Names map one to one, digits joined: ``cfm.estimator.transformer_blocks.0.ff.ff.0.0.weight`` <->
``cfm/estimator/transformer_blocks_0/ff/ff_0_0/weight``.
"""
from __future__ import annotations

import json
import pathlib
import re

import numpy as np

from gsv_jax import families
from gsv_jax.convert import s2 as s2conv
from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.io.trees import flatten, unflatten

LORA_PREFIX = "cfm.base_model.model."
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: the original's file names of the base models and vocoders (GPT_SoVITS/pretrained_models/)
BASE_FILES = {"v3": "s2Gv3.pth", "v4": "gsv-v4-pretrained/s2Gv4.pth"}
VOCODER_FILES = {"v3": "models--nvidia--bigvgan_v2_24khz_100band_256x/", "v4": "gsv-v4-pretrained/vocoder.pth"}
_MODULE_INDEXED = re.compile(r"^(ff|to_out|time_mlp|transformer_blocks|text_blocks|conv1d|bridge|activations)"
                             r"((?:_\d+)+)$")
_BUFFER_SUFFIXES = ("_codebook.inited", "_codebook.cluster_size", "_codebook.embed_avg")


class LoraBaseError(CheckpointError):
    """A LoRA fine-tune loaded without (or with the wrong) base model."""


# ----------------------------------------------------------------------------------------------
# names

def key_to_path(key: str) -> tuple:
    return s2conv.torch_key_to_path(key)


def path_to_key(path: tuple) -> str:
    out = []
    for p in path:
        m = _MODULE_INDEXED.match(p)
        if m:
            out.append(m.group(1) + m.group(2).replace("_", "."))
        else:
            out.append(s2conv.path_to_torch_key((p,)))
    return ".".join(out)


def _norm_except0(v):
    v = np.asarray(v, np.float32)
    return np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def state_dict_to_params(sd: dict, template: dict, where: str = "checkpoint"):
    """Map a state dict onto ``template`` (arrays or ShapeDtypeStructs). Weight-normed layers accept
    ``weight_g``/``weight_v`` or a folded ``weight`` and come out as the template has them. Returns
    ``(params fp32 numpy, quantizer buffers)``; missing / unexpected keys and shape mismatches raise."""
    sd = s2conv.canonical_weight_norm_keys(dict(sd))
    buffers = {k: v for k, v in sd.items() if k.endswith(_BUFFER_SUFFIXES)}
    by_path = {key_to_path(k): k for k in sd if k not in buffers}
    used, out, missing, bad = set(buffers), {}, [], []
    for path, leaf in flatten(template).items():
        name, layer = path[-1], path[:-1]
        if name in ("weight_g", "weight_v"):
            g_key, v_key, w_key = (by_path.get(layer + (n,)) for n in ("weight_g", "weight_v", "weight"))
            if g_key and v_key:
                v = np.asarray(sd[v_key], np.float32)
                val = np.asarray(sd[g_key], np.float32) if name == "weight_g" else v
                used.update((g_key, v_key))
            elif w_key:
                v = np.asarray(sd[w_key], np.float32)
                val = _norm_except0(v) if name == "weight_g" else v
                used.add(w_key)
            else:
                missing.append(path_to_key(path))
                continue
        elif name == "weight" and by_path.get(layer + ("weight_g",)):
            g_key, v_key = by_path[layer + ("weight_g",)], by_path[layer + ("weight_v",)]
            v = np.asarray(sd[v_key], np.float32)
            val = v * (np.asarray(sd[g_key], np.float32) / _norm_except0(v))
            used.update((g_key, v_key))
        else:
            key = by_path.get(path)
            if key is None:
                missing.append(path_to_key(path))
                continue
            val = np.asarray(sd[key], np.float32)
            used.add(key)
        if tuple(val.shape) != tuple(leaf.shape):
            bad.append(f"{path_to_key(path)}: file {tuple(val.shape)} vs model {tuple(leaf.shape)}")
            continue
        out[path] = val
    s2conv.raise_if_mismatched(f"{where}: weights do not fit the architecture", missing, sorted(set(sd) - used), bad)
    return unflatten(out), buffers


def params_to_state_dict(params: dict, *, buffers: dict | None = None, dtype=np.float16,
                         key_order: list | None = None) -> dict:
    """Our tree (weight norm as ``weight_g``/``weight_v`` where the model has it) -> the original's keys."""
    sd = {path_to_key(p): np.asarray(v, np.float32) for p, v in flatten(params).items()}
    sd.update({k: np.asarray(v) for k, v in (buffers or {}).items()})
    keys = list(sd)
    if key_order:
        pos = {k: i for i, k in enumerate(key_order)}
        keys = sorted(keys, key=lambda k: pos.get(k, len(pos)))
    return {k: np.ascontiguousarray(sd[k].astype(dtype) if np.issubdtype(sd[k].dtype, np.floating) else sd[k])
            for k in keys}


# ----------------------------------------------------------------------------------------------
# S2 v3/v4 files

def _hps_model(hps) -> dict:
    if hps is None or "model" not in hps:
        return {}
    m = hps["model"]
    return m.to_dict() if isinstance(m, HParams) else dict(m)


def detect(path, sd: dict, head: bytes, hps=None) -> tuple[str, bool]:
    """``(version, is_lora)`` of a v3/v4 file: the md5 of the official files, the 2-byte head
    (``02`` v3, ``03``/``04`` LoRA), then ``config.model.version``, then "v3" (the original's size rule
    for plain zips ends in v3 for the full-size models; fine-tuned v4 exports carry their config)."""
    _, digest = families.head_digest(path)
    if digest in families.HASHES:
        return families.HASHES[digest], False
    if head != b"PK" and head in families.HEADS:
        version, lora = families.HEADS[head]
        if version in ("v3", "v4"):
            return version, lora
    v = _hps_model(hps).get("version")  # (read_v3_file also flags LoRA files by their "lora_rank")
    return (v if v in ("v3", "v4") else "v3"), False


def read_v3_file(path):
    """Load a v3/v4 SoVITS file: ``(state_dict, hparams, meta)``; ``meta``: head, info, version,
    ``lora`` (bool), ``lora_rank``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SoVITS model not found: {path}")
    obj, head = load_torch_file(path, return_head=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("weight", obj.get("model")), dict):
        raise CheckpointError(f"{path}: not a SoVITS weights file (no 'weight' state dict inside)")
    sd = dict(obj.get("weight", obj.get("model")))
    hps = obj.get("config")
    version, lora = detect(path, sd, head, hps)
    lora = lora or "lora_rank" in obj or any(".lora_A." in k for k in sd)
    if not lora and not any(k.startswith("cfm.") for k in sd):
        raise CheckpointError(f"{path}: not a SoVITS v3/v4 model (no cfm.* weights); load v1/v2 files with "
                              "gsv_jax.load_s2")
    meta = {"head": head, "info": obj.get("info"), "version": version, "lora": lora,
            "lora_rank": obj.get("lora_rank")}
    return sd, hps, meta


def merge_lora(base_sd: dict, lora_sd: dict, rank: int, alpha: float | None = None) -> dict:
    """The base state dict with a LoRA file applied as the original loads it: non-LoRA keys replace
    the base values (``cfm.base_model.model.X`` -> ``cfm.X``), then every targeted attention weight
    becomes ``W + (B @ A) · alpha / rank`` (fp32; alpha = rank as the original configures peft)."""
    alpha = float(rank if alpha is None else alpha)
    out = {k: v for k, v in base_sd.items()}
    factors = {}
    for k, v in lora_sd.items():
        if ".lora_A." in k or ".lora_B." in k:
            layer, which = re.match(r"^(.*)\.lora_([AB])\.[^.]+\.weight$", k).groups()
            factors.setdefault(layer.replace(LORA_PREFIX, "cfm.", 1), {})[which] = np.asarray(v, np.float32)
            continue
        key = k.replace(LORA_PREFIX, "cfm.", 1)
        if key not in out:
            raise CheckpointError(f"LoRA file has {k!r}, which its base model does not have; is it the right base?")
        out[key] = v
    if not factors:
        raise CheckpointError("LoRA file holds no lora_A/lora_B factors")
    for layer, ab in factors.items():
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"LoRA factors of {layer} are incomplete (have {sorted(ab)})")
        w_key = layer + ".weight"
        if w_key not in out:
            raise CheckpointError(f"LoRA targets {w_key}, which the base model does not have")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != rank or b.shape[1] != rank:
            raise CheckpointError(f"LoRA factors of {layer} have rank {a.shape[0]}, the file says lora_rank {rank}")
        out[w_key] = np.asarray(base_sd[w_key], np.float32) + (b @ a) * np.float32(alpha / rank)
    return out


def config_from_state_dict(sd: dict, hps=None, version: str = "v3") -> dict:
    """The architecture (incl. the widths the original hard-codes) from the tensor shapes."""
    m = _hps_model(hps)

    def shape(k):
        if k not in sd:
            raise CheckpointError(f"cannot read the v3/v4 architecture: {k} is missing")
        return tuple(sd[k].shape)

    est = "cfm.estimator."
    hidden = shape("enc_p.ssl_proj.weight")[0]
    dk = shape("enc_p.encoder_text.attn_layers.0.emb_rel_k")[-1]
    return {
        "version": version,
        "inter_channels": int(m.get("inter_channels", 192)),
        "hidden_channels": hidden,
        "filter_channels": shape("enc_p.encoder_text.ffn_layers.0.conv_1.weight")[0],
        "n_heads": hidden // dk,
        "n_layers": len({k.split(".")[3] for k in sd if k.startswith("enc_p.encoder_text.attn_layers.")}),
        "kernel_size": shape("enc_p.encoder_text.ffn_layers.0.conv_1.weight")[-1],
        "gin_channels": shape("ref_enc.fc.fc.weight")[0],
        "n_symbols": shape("enc_p.text_embedding.weight")[0],
        "model_dim": shape("bridge.0.weight")[0],
        "wns1_layers": len({k.split(".")[3] for k in sd if k.startswith("wns1.enc.in_layers.")}),
        "wns1_kernel": (sd.get("wns1.enc.in_layers.0.weight_v", sd.get("wns1.enc.in_layers.0.weight"))).shape[-1],
        "mel_dim": shape(est + "proj_out.weight")[0],
        "dit_dim": shape(est + "proj_out.weight")[1],
        "dit_depth": len({k.split(".")[3] for k in sd if k.startswith(est + "transformer_blocks.")}),
        "dit_heads": shape(est + "transformer_blocks.0.attn.to_q.weight")[0] // 64,
        "dit_dim_head": 64,
        "dit_ff_mult": shape(est + "transformer_blocks.0.ff.ff.0.0.weight")[0] // shape(est + "proj_out.weight")[1],
        "dit_conv_layers": len({k.split(".")[4] for k in sd if k.startswith(est + "text_embed.text_blocks.")}),
    }


def make_hparams(cfg: dict, version: str) -> HParams:
    """An ``HParams`` like the original's ``s2.json`` + ``model.version`` (what ``s2_train_v3.py`` saves)."""
    model = {"inter_channels": cfg["inter_channels"], "hidden_channels": cfg["hidden_channels"],
             "filter_channels": cfg["filter_channels"], "n_heads": cfg["n_heads"], "n_layers": cfg["n_layers"],
             "kernel_size": cfg["kernel_size"], "p_dropout": 0.1, "resblock": "1",
             "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
             "upsample_rates": [10, 8, 2, 2, 2], "upsample_initial_channel": 512,
             "upsample_kernel_sizes": [16, 16, 8, 2, 2], "gin_channels": cfg["gin_channels"]}
    return s2conv.make_hparams(model, version)


def write_v3_export(path, state_dict: dict, hparams, info: str = "gsv_jax export", version: str = "v3") -> None:
    """The original's full-model export (``savee``): a plain torch zip ``{"weight", "config", "info"}``."""
    save_torch_file({"weight": state_dict, "config": hparams, "info": info}, path)


# ----------------------------------------------------------------------------------------------
# vocoders

def read_bigvgan(folder) -> tuple[dict, dict]:
    """``(config dict, state dict with weight norm folded)`` of a BigVGAN folder."""
    folder = pathlib.Path(folder)
    cfg_file, pt = folder / "config.json", folder / "bigvgan_generator.pt"
    if not cfg_file.is_file() or not pt.is_file():
        raise CheckpointError(f"{folder}: a BigVGAN folder holds config.json and bigvgan_generator.pt "
                              f"(the layout of {VOCODER_FILES['v3']})")
    cfg = json.loads(cfg_file.read_text())
    obj = load_torch_file(pt)
    sd = obj.get("generator", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{pt}: expected {{'generator': state_dict}}")
    for k in ("activation", "snake_logscale", "resblock"):
        if k not in cfg:
            raise CheckpointError(f"{cfg_file}: missing {k!r} (not a BigVGAN v2 config)")
    if cfg["resblock"] != "1" or cfg["activation"] != "snakebeta":
        raise CheckpointError(f"{cfg_file}: only resblock '1' with snakebeta activations is supported "
                              f"(GPT-SoVITS v3 uses bigvgan_v2_24khz_100band_256x), got {cfg['resblock']!r}/"
                              f"{cfg['activation']!r}")
    return cfg, fold_state_dict(sd)


def read_vocoder_v4(path) -> dict:
    """The v4 vocoder state dict (weight norm folded if present)."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("weight"), dict) and "cfm.estimator.proj_out.weight" in obj["weight"]:
        raise CheckpointError(f"{path} is a SoVITS v3/v4 model, not the v4 vocoder ({VOCODER_FILES['v4']})")
    if not isinstance(obj, dict) or "conv_pre.weight" not in obj and "conv_pre.weight_v" not in obj:
        raise CheckpointError(f"{path}: not the v4 vocoder state dict (no conv_pre.weight); expected the "
                              f"layout of {VOCODER_FILES['v4']}")
    return fold_state_dict(obj)


def fold_state_dict(sd: dict) -> dict:
    """``weight_g``/``weight_v`` pairs -> ``weight`` (fp32)."""
    sd = s2conv.canonical_weight_norm_keys(dict(sd))
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            continue
        if k.endswith(".weight_v"):
            g = np.asarray(sd[k[:-1] + "g"], np.float32)
            v = np.asarray(v, np.float32)
            out[k[:-2]] = v * (g / _norm_except0(v))
        else:
            out[k] = np.asarray(v, np.float32) if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v)
    return out
