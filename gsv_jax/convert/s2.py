"""SoVITS (S2) checkpoints <-> our parameter trees, without torch (docs/convert.md, docs/s2.md).

Reads the exported weights (``{"weight", "config", "info"}``, fp16, no ``enc_q``), the pretrained
``s2G*.pth`` (``{"weight": ...}``) and training checkpoints ``G_*.pth`` (``{"model": ..., "optimizer": ...}``,
with ``enc_q``). Weight norm may be stored as ``weight_g``/``weight_v``, as
``parametrizations.weight.original0/1``, or folded into ``weight``; all three are accepted. Names
map one to one: ``enc_p.encoder_ssl.attn_layers.0.conv_q.weight`` <-> ``enc_p/encoder_ssl/attn_layers_0/conv_q/weight``.
"""
from __future__ import annotations

import pathlib
import re

import numpy as np

from gsv_jax import families
from gsv_jax.convert.sv import looks_like_sv
from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.io.trees import flatten, unflatten

# ModuleList / Sequential containers whose children are numbered in the torch names
_INDEXED = ("attn_layers", "norm_layers_1", "norm_layers_2", "ffn_layers", "flows", "in_layers",
            "res_skip_layers", "ups", "resblocks", "convs1", "convs2", "spectral", "temporal", "layers")
_INDEXED_RE = re.compile(rf"^({'|'.join(_INDEXED)})_(\d+)$")

# buffers of the quantizer that are not parameters (kept aside, written back on export)
_BUFFER_SUFFIXES = ("_codebook.inited", "_codebook.cluster_size", "_codebook.embed_avg")

class UnsupportedVersionError(CheckpointError):
    """A SoVITS file of a version this port cannot run yet (``families.Family.supported`` is False)."""


def torch_key_to_path(key: str) -> tuple:
    parts = key.split(".")
    out = []
    for p in parts:
        if p.isdigit() and out:
            out[-1] = f"{out[-1]}_{p}"
        else:
            out.append(p)
    return tuple(out)


def path_to_torch_key(path: tuple) -> str:
    out = []
    for p in path:
        m = _INDEXED_RE.match(p)
        out.append(f"{m.group(1)}.{m.group(2)}" if m else p)
    return ".".join(out)


def _norm_except0(v):
    v = np.asarray(v, np.float32)
    return np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def fold_weight_norm(params):
    """Replace every ``{weight_g, weight_v}`` pair by ``weight = v * g / ||v||`` (fp32 numpy, once)."""

    def walk(d):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out[k] = walk(v)
            elif k not in ("weight_g", "weight_v"):
                out[k] = v
        if "weight_g" in d and "weight_v" in d:
            v = np.asarray(d["weight_v"], np.float32)
            out["weight"] = v * (np.asarray(d["weight_g"], np.float32) / _norm_except0(v))
        return out

    return walk(params)


def canonical_weight_norm_keys(sd: dict) -> dict:
    """``parametrizations.weight.original0/1`` -> ``weight_g/weight_v``."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".parametrizations.weight.original0"):
            k = k[: -len("parametrizations.weight.original0")] + "weight_g"
        elif k.endswith(".parametrizations.weight.original1"):
            k = k[: -len("parametrizations.weight.original1")] + "weight_v"
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# reading

def read_s2_file(path):
    """Load a SoVITS file: returns ``(state_dict, hparams_or_None, meta)`` with numpy arrays as stored.

    ``meta``: ``{"head", "kind" ("export" | "pretrained" | "train"), "info", "iteration", "detected_version"}``.
    """
    path = pathlib.Path(path)
    obj, head = load_torch_file(path, return_head=True)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    meta = {"head": head, "info": obj.get("info"), "iteration": obj.get("iteration")}
    if "weight" in obj and isinstance(obj["weight"], dict):
        sd, kind = obj["weight"], ("export" if "config" in obj else "pretrained")
    elif "model" in obj and isinstance(obj["model"], dict):
        sd, kind = obj["model"], "train"
    elif obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        sd, kind = obj, "state_dict"
    else:
        raise CheckpointError(f"{path}: no 'weight' or 'model' state dict inside (keys: {sorted(obj)[:8]})")
    meta["kind"] = kind
    sd = canonical_weight_norm_keys(dict(sd))
    _refuse_non_sovits(path, sd, obj)
    hps = obj.get("config")
    meta["detected_version"] = detect_version(path, sd, head, hps)
    return sd, hps, meta


def _refuse_non_sovits(path, sd, obj):
    keys = list(sd)
    if looks_like_sv(sd):
        raise CheckpointError(
            f"{path} is the speaker-verification model (ERes2NetV2, sv/pretrained_eres2netv2w24s4ep4.ckpt), not a "
            "SoVITS model; load it with gsv_jax.load_sv (v2Pro/v2ProPlus model folders keep it as sv/<file>.ckpt)")
    if keys and sum(k.startswith("model.") for k in keys) > len(keys) // 2 or any(
            k.startswith(("model.ar_", "ar_text_embedding", "ar_predict_layer")) for k in keys):
        raise CheckpointError(
            f"{path} is a GPT (S1, text-to-semantic) checkpoint, not a SoVITS (S2) model; "
            "load it with gsv_jax.load_s1 and give load_s2 a SoVITS .pth (e.g. from SoVITS_weights*/)")
    if any(k.startswith("discriminators.") for k in keys):
        raise CheckpointError(
            f"{path} is a discriminator checkpoint (D_*.pth), not a SoVITS generator; load the matching "
            "G_*.pth (read D files with gsv_jax.convert.s2.read_discriminator_state)")
    if "enc_p.text_embedding.weight" not in sd and not any(k.startswith("enc_p.") for k in keys):
        raise CheckpointError(f"{path}: not a SoVITS (S2) model: no enc_p.* weights among {len(keys)} entries")


def detect_version(path, sd: dict, head: bytes, hps=None) -> str:
    """The model version as the original's loaders derive it (``docs/families.md``): hash, head, state dict."""
    _, digest = families.head_digest(path)
    stored = getattr(getattr(hps, "model", None), "version", None)
    version, _lora = families.detect_s2({k: tuple(np.shape(v)) for k, v in sd.items()}, head, digest, stored)
    return version


def refuse_unsupported(path, version):
    """Raise :class:`UnsupportedVersionError` for a family this port cannot run yet."""
    if not families.family(version).supported:
        runs = ", ".join(f.name for f in families.FAMILIES.values() if f.supported)
        raise UnsupportedVersionError(
            f"{path}: SoVITS {version} models are not supported yet (this port runs {runs}); "
            "use one of those, or the original GPT-SoVITS for this one")


def config_from_state_dict(sd: dict, version: str) -> dict:
    """Architecture widths inferred from tensor shapes (for files without a stored config, e.g. G_*.pth)."""
    def shape(k):
        if k not in sd:
            raise CheckpointError(f"cannot infer the S2 architecture: {k} is missing")
        return sd[k].shape

    n_layers = len({k.split(".")[3] for k in sd if k.startswith("enc_p.encoder_text.attn_layers.")})
    dk = shape("enc_p.encoder_text.attn_layers.0.emb_rel_k")[-1]
    hidden = shape("enc_p.ssl_proj.weight")[0]
    ups = sorted({int(k.split(".")[2]) for k in sd if k.startswith("dec.ups.")})
    ups_w = [sd.get(f"dec.ups.{i}.weight_v", sd.get(f"dec.ups.{i}.weight")) for i in ups]
    n_res = len({int(k.split(".")[2]) for k in sd if k.startswith("dec.resblocks.")})
    nk = n_res // max(len(ups), 1)
    rk = []
    for j in range(nk):
        w = sd.get(f"dec.resblocks.{j}.convs1.0.weight_v", sd.get(f"dec.resblocks.{j}.convs1.0.weight"))
        rk.append(int(w.shape[-1]))
    kernels = [int(w.shape[-1]) for w in ups_w]
    default_rates = {5: [10, 8, 2, 2, 2]}
    if len(ups) not in default_rates:
        raise CheckpointError(f"cannot infer upsample rates for {len(ups)} upsampling layers; pass a config")
    pro = families.family(version).speaker_verification
    extra = {"sv_dim": int(shape("sv_emb.weight")[1])} if pro else {}
    return {
        "version": version,
        "inter_channels": shape("enc_p.proj.weight")[0] // 2,
        "hidden_channels": hidden,
        "filter_channels": shape("enc_p.encoder_text.ffn_layers.0.conv_1.weight")[0],
        "n_heads": hidden // dk,
        "n_layers": n_layers,
        "kernel_size": shape("enc_p.encoder_text.ffn_layers.0.conv_1.weight")[-1],
        "p_dropout": 0.0 if pro else 0.1,  # s2v2Pro*.json: 0.0
        "resblock": "1",
        "resblock_kernel_sizes": rk,
        "resblock_dilation_sizes": [[1, 3, 5]] * nk,
        "upsample_rates": default_rates[len(ups)],
        "upsample_initial_channel": shape("dec.conv_pre.weight")[0],
        "upsample_kernel_sizes": kernels,
        "gin_channels": shape("dec.cond.weight")[1],
        "semantic_frame_rate": "25hz",
        **extra,
    }


def state_dict_to_params(sd: dict, template: dict, *, weight_norm: bool = True, strict_enc_q: bool = False,
                         where: str = "checkpoint"):
    """Map a (canonical) state dict onto ``template`` (a flat-able tree of arrays or ShapeDtypeStructs).

    Returns ``(params, buffers)``: params fp32 numpy in the template's structure (``weight_g/weight_v``
    where the template has them; folded ``weight`` otherwise), buffers = quantizer buffers as stored.
    ``enc_q.*`` in the template but not in the file is dropped (exported files have no enc_q) unless
    ``strict_enc_q``. Missing or unexpected keys, and shape mismatches, raise with a list.
    """
    flat_t = flatten(template)
    has_enc_q = any(k.startswith("enc_q.") for k in sd)
    buffers = {k: v for k, v in sd.items() if k.endswith(_BUFFER_SUFFIXES)}
    used = set(buffers)
    out = {}
    missing, bad_shape = [], []
    # group template leaves per layer to handle weight-norm styles
    for path, leaf in flat_t.items():
        if path[0] == "enc_q" and not has_enc_q and not strict_enc_q:
            continue
        name = path[-1]
        layer = path_to_torch_key(path[:-1])
        if name in ("weight_g", "weight_v") or (name == "weight" and _is_wn_layer(sd, layer)):
            g_key, v_key, w_key = f"{layer}.weight_g", f"{layer}.weight_v", f"{layer}.weight"
            if g_key in sd and v_key in sd:
                g, v = np.asarray(sd[g_key], np.float32), np.asarray(sd[v_key], np.float32)
                used.update((g_key, v_key))
            elif w_key in sd:
                v = np.asarray(sd[w_key], np.float32)
                g = _norm_except0(v)
                used.add(w_key)
            else:
                missing.append(g_key if name != "weight" else w_key)
                continue
            if name == "weight_g":
                val = g
            elif name == "weight_v":
                val = v
            else:
                val = v * (g / _norm_except0(v))
        else:
            key = path_to_torch_key(path)
            if key not in sd:
                missing.append(key)
                continue
            val = np.asarray(sd[key], np.float32)
            used.add(key)
        if tuple(val.shape) != tuple(leaf.shape):
            bad_shape.append(f"{path_to_torch_key(path)}: file {tuple(val.shape)} vs model {tuple(leaf.shape)}")
            continue
        out[path] = val
    raise_if_mismatched(f"{where}: weights do not fit the S2 architecture", missing, sorted(set(sd) - used), bad_shape)
    return unflatten(out), buffers


def raise_if_mismatched(what: str, missing, unexpected, bad_shape) -> None:
    """One :class:`CheckpointError` listing missing / unexpected / wrong-shape keys (examples of each)."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:5]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    if bad_shape:
        parts.append(f"{len(bad_shape)} with other shapes (e.g. {bad_shape[:3]})")
    if parts:
        raise CheckpointError(f"{what}: " + "; ".join(parts))


def _is_wn_layer(sd, layer):
    return f"{layer}.weight_g" in sd


def params_to_state_dict(params: dict, wn_layers: set[str], *, dtype=np.float16, drop_enc_q: bool = True,
                         buffers: dict | None = None, key_order: list | None = None) -> dict:
    """Our tree -> an original state dict (``weight_g/weight_v`` for every layer in ``wn_layers``)."""
    flat = flatten(params)
    sd = {}
    for path, val in flat.items():
        if drop_enc_q and path[0] == "enc_q":
            continue
        val = np.asarray(val, np.float32)
        layer, name = path_to_torch_key(path[:-1]), path[-1]
        if name == "weight" and layer in wn_layers:
            sd[f"{layer}.weight_g"] = _norm_except0(val)
            sd[f"{layer}.weight_v"] = val
        else:
            sd[path_to_torch_key(path)] = val
    for k, v in (buffers or {}).items():
        sd[k] = np.asarray(v)
    # order like the original: keep the module order of the model (enc_p, dec, enc_q, flow, ref_enc, ssl_proj, quantizer)
    order = ["enc_p.", "dec.", "enc_q.", "flow.", "ref_enc.", "ssl_proj.", "quantizer.", "sv_emb.", "ge_to512.",
             "prelu."]
    ranked = sorted(sd, key=lambda k: next((i for i, p in enumerate(order) if k.startswith(p)), len(order)))
    if key_order:  # the order of the file the model came from
        pos = {k: i for i, k in enumerate(key_order)}
        ranked = sorted(ranked, key=lambda k: pos.get(k, len(pos)))
    return {k: np.ascontiguousarray(sd[k].astype(dtype) if np.issubdtype(sd[k].dtype, np.floating) else sd[k])
            for k in ranked}


def default_buffers(embed: np.ndarray) -> dict:
    """Quantizer buffers for a model that never had any (fresh init)."""
    pre = "quantizer.vq.layers.0._codebook."
    embed = np.asarray(embed, np.float32)
    return {pre + "inited": np.ones((1,), np.float32), pre + "cluster_size": np.ones((embed.shape[0],), np.float32),
            pre + "embed_avg": embed.copy()}


def make_hparams(model_cfg: dict, version: str, name: str = "gsv_jax") -> HParams:
    """An ``HParams`` config like the original's ``s2.json`` + the web UI's fields."""
    data = {"max_wav_value": 32768.0, "sampling_rate": families.family(version).ref_sample_rate, "filter_length": 2048, "hop_length": 640,
            "win_length": 2048, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True,
            "n_speakers": 300, "cleaned_text": True}
    train = {"log_interval": 100, "eval_interval": 500, "seed": 1234, "epochs": 100, "learning_rate": 0.0001,
             "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 32, "fp16_run": True, "lr_decay": 0.999875,
             "segment_size": 20480, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0,
             "text_low_lr_rate": 0.4}
    model = {k: v for k, v in model_cfg.items() if k not in ("spec_channels", "segment_size", "ssl_dim",
                                                              "codebook_bins", "sv_dim")}
    model.update({"n_layers_q": 3, "use_spectral_norm": False, "version": version,
                  "freeze_quantizer": bool(model_cfg.get("freeze_quantizer", True))})
    return HParams(train=train, data=data, model=model, version=version, name=name,
                   save_weight_dir=f"SoVITS_weights_{version}")


def export_head(version: str) -> bytes | None:
    """The 2-byte head the original's exporter (``process_ckpt.savee``) writes for ``version``: its
    family's head for v2Pro* (``my_save2``: ``05``/``06``), None (a plain zip) for v1/v2."""
    fam = families.family(version)
    return fam.head if fam.speaker_verification else None


def write_s2_export(path, state_dict: dict, hparams, info: str = "gsv_jax export", *, version: str | None = None) -> None:
    """Write the exported-weights format (``{"weight", "config", "info"}``): v1/v2 plain zips, v2Pro*
    with the head ``05``/``06`` in place of ``PK`` (``version`` defaults to ``hparams.model.version``)."""
    if version is None:
        model = hparams.get("model") if isinstance(hparams, (dict, HParams)) else None
        version = (model.get("version") if isinstance(model, (dict, HParams)) else None) or "v2"
    save_torch_file({"weight": state_dict, "config": hparams, "info": info}, path, head=export_head(version))


def read_discriminator_state(path) -> dict:
    """``D_*.pth`` / ``s2D*.pth`` -> the raw discriminator state dict (numpy, as stored; canonical WN names)."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        sd = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("weight"), dict):
        sd = obj["weight"]
    else:
        sd = obj
    sd = canonical_weight_norm_keys(dict(sd))
    if not any(k.startswith("discriminators.") for k in sd):
        raise CheckpointError(f"{path}: not a SoVITS discriminator (no discriminators.* weights)")
    return sd

