"""Fine-tuning v2Pro/v2ProPlus from the original's files, and exports in the formats it reads back.

Starting points, as the original's ``s2_train.py`` takes them:

* the official pretrained ``s2Gv2ProPlus.pth`` / ``s2Gv2Pro.pth`` (a torch zip, read with
  ``torch.load(...)["weight"]``) and ``s2Dv2Pro*.pth`` (``{"weight": D state dict}``);
* the WebUI's exported weights (head ``06`` / ``05``, ``load_sovits_new``): the golden
  ``s2_v2ProPlus_tiny.pth`` is one (the original's ``my_save2``);
* training checkpoints ``logs_s2_<version>/G_*.pth`` / ``D_*.pth`` (``utils.save_checkpoint``:
  ``{"model", "iteration", "optimizer", "learning_rate"}``, G with ``enc_q``).

The exports (``G_*`` / ``D_*`` and the weights with head ``06``/``05``) are opened as the original
opens them (``torch.load``; for the weights the head replaced by ``PK`` and a stand-in
``utils.HParams``, as ``process_ckpt.load_sovits_new``) and compared key by key with files the
original wrote (the goldens). Generator: the golden tiny v2ProPlus; discriminator at 1/4 width
(``disc_width_div=4``, made here in the official layout) to keep the files small.
The heavy test runs ``train.py`` end to end from these files on an original experiment folder.
"""
import dataclasses
import io
import pathlib
import sys
import types

import jax
import numpy as np
import pytest

from gsv_jax.convert import s2 as conv
from gsv_jax.convert.s2_discriminator import discriminator_params_to_state_dict
from gsv_jax.io.torch_io import load_torch_file, save_torch_file
from gsv_jax.models.s2.synthesizer import S2ModelConfig
from gsv_jax.train.s2_task import S2Task
from gsv_jax.train.task import TrainingSetupError
from tests.conftest import golden_path

GOLDEN_G = "s2_v2ProPlus_tiny.pth"  # exported weights, head 06, written by the original
WIDTH_DIV = 4
PRO_PERIODS = (2, 3, 5, 7, 11, 17, 23)


def golden_model_config() -> dict:
    _sd, hps, _meta = conv.read_s2_file(golden_path(GOLDEN_G))
    return dict(hps.model.__dict__ if hasattr(hps.model, "__dict__") else hps.model)


def make_task(version="v2ProPlus") -> S2Task:
    cfg = S2ModelConfig.from_mapping(golden_model_config(), version=version, segment_size=8)
    return S2Task(cfg, dropout=False, disc_width_div=WIDTH_DIV)


@pytest.fixture(scope="module")
def task():
    return make_task()


@pytest.fixture(scope="module")
def official(tmp_path_factory, task):
    """``s2Gv2ProPlus.pth``-like (the golden's content as a plain torch zip) and ``s2Dv2ProPlus.pth``-like
    (``{"weight": fp16 D state dict}``) files."""
    from gsv_jax.models.s2.discriminator import init_discriminator

    folder = tmp_path_factory.mktemp("official")
    g = folder / "s2Gv2ProPlus.pth"
    g.write_bytes(b"PK" + golden_path(GOLDEN_G).read_bytes()[2:])  # the same zip without the version head
    import flax.linen as nn

    d_params = jax.device_get(nn.meta.unbox(init_discriminator(jax.random.PRNGKey(1), "v2ProPlus",
                                                               width_div=WIDTH_DIV)))
    d = folder / "s2Dv2ProPlus.pth"
    save_torch_file({"weight": discriminator_params_to_state_dict(d_params, np.float16)}, d)
    return {"G": g, "D": d, "d_params": d_params}


def torch_load_like_the_original(path):
    """``load_sovits_new``: a head other than ``PK`` is replaced by ``PK``; the pickled config needs the
    original's ``utils.HParams`` (a stand-in class here); training checkpoints are plain ``torch.load``."""
    torch = pytest.importorskip("torch")
    data = pathlib.Path(path).read_bytes()
    stub = types.ModuleType("utils")

    class HParams:
        pass

    stub.HParams = HParams
    saved = sys.modules.get("utils")
    sys.modules["utils"] = stub
    try:
        return data[:2], torch.load(io.BytesIO(b"PK" + data[2:]), map_location="cpu", weights_only=False)
    finally:
        if saved is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = saved


def expected_d_keys() -> list:
    """The Pro discriminator's keys: the golden v2 ``D`` (written by the original: DiscriminatorS + 5
    period discriminators) plus two more period discriminators with the same layout."""
    torch = pytest.importorskip("torch")
    v2 = list(torch.load(golden_path("s2_train_tiny_D.pth"), map_location="cpu", weights_only=False,
                         mmap=True)["model"])
    extra = [k.replace("discriminators.5.", f"discriminators.{i}.") for i in (6, 7)
             for k in v2 if k.startswith("discriminators.5.")]
    return v2 + extra


def assert_trees_equal(got, want, what):
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                      err_msg=f"{what}{jax.tree_util.keystr(path)}")


def test_fine_tune_from_official_files_and_export(task, official, tmp_path):
    golden_sd, _hps, _ = conv.read_s2_file(golden_path(GOLDEN_G))
    params, info = task.params_from_original(official["G"], official["D"])
    assert info["iteration"] == 0  # pretrained files start the lr schedule at epoch 1
    # the generator is the file's fp16 weights; enc_q (not in pretrained/exported files) is freshly drawn
    assert "enc_q" in params["g"]
    np.testing.assert_array_equal(params["g"]["sv_emb"]["weight"], golden_sd["sv_emb.weight"].astype(np.float32))
    np.testing.assert_array_equal(params["g"]["prelu"]["weight"], golden_sd["prelu.weight"].astype(np.float32))
    assert len(params["d"]) == 1 + len(PRO_PERIODS)
    assert_trees_equal(params["d"], jax.tree.map(lambda a: np.asarray(a).astype(np.float16), official["d_params"]),
                       "D from s2Dv2ProPlus ")
    # (a file with the head 05 / 06, the WebUI's export, is a starting point too: test_v2pro_head_05_round_trip)
    paths = task.export_original(params, tmp_path / "export", 7, 2, buffers=info["buffers"], hparams=info["hparams"])
    # the WebUI's weights: head 06, the original's keys / dtypes / shapes and, untrained, the same fp16 values
    head, obj = torch_load_like_the_original(paths["weights"])
    assert head == b"06"
    _, ref = torch_load_like_the_original(golden_path(GOLDEN_G))
    assert obj["config"].model.__dict__ == ref["config"].model.__dict__ and obj["config"].model.version == "v2ProPlus"
    # (the key order inside enc_p differs from the module order: load_state_dict goes by name)
    assert sorted(obj["weight"]) == sorted(ref["weight"])
    for k, v in ref["weight"].items():
        assert obj["weight"][k].dtype == v.dtype and obj["weight"][k].equal(v), k
    # s2_train.py's training checkpoints: plain torch zips, G with enc_q, the epoch counter
    head, g_ckpt = torch_load_like_the_original(paths["G"])
    assert head == b"PK" and g_ckpt["iteration"] == 2 and g_ckpt["optimizer"] is None
    enc_q = [k for k in g_ckpt["model"] if k.startswith("enc_q.")]
    assert enc_q and sorted(k for k in g_ckpt["model"] if not k.startswith("enc_q.")) == sorted(ref["weight"])
    want_enc_q = [k for k in load_torch_file(golden_path("s2_train_tiny_G.pth"))["model"] if k.startswith("enc_q.")]
    assert sorted(enc_q) == sorted(want_enc_q)  # the original's PosteriorEncoder (same layout in v2 and Pro)
    for k, v in ref["weight"].items():
        assert tuple(g_ckpt["model"][k].shape) == tuple(v.shape), k
    head, d_ckpt = torch_load_like_the_original(paths["D"])
    assert head == b"PK" and sorted(d_ckpt["model"]) == sorted(expected_d_keys())
    # and fine-tuning resumes from them exactly (fp32 G/D, the epoch counter continues)
    back, info2 = task.params_from_original(paths["G"], paths["D"])
    assert info2["iteration"] == 2
    np.testing.assert_array_equal(back["g"]["sv_emb"]["weight"], params["g"]["sv_emb"]["weight"])
    assert_trees_equal(back["g"]["enc_q"], params["g"]["enc_q"], "enc_q through G_7 ")
    assert_trees_equal(back["d"], params["d"], "D through D_7 ")


def test_v2pro_head_05_round_trip(tmp_path):
    """v2Pro (the narrower generator, same code): an ``s2Gv2Pro``-like file with head 05 fine-tunes a
    v2Pro config and exports with head 05."""
    import gsv_jax
    from gsv_jax.inference.s2 import S2

    s2 = gsv_jax.load_s2(golden_path(GOLDEN_G))
    s2 = S2(dataclasses.replace(s2.config, version="v2Pro"), s2.params, buffers=s2.buffers)  # no stored config
    path = tmp_path / "s2Gv2Pro.pth"
    gsv_jax.save_s2_torch(s2, path)
    assert path.read_bytes()[:2] == b"05"
    task = make_task("v2Pro")
    params, info = task.params_from_original(path)
    assert len(params["d"]) == 1 + len(PRO_PERIODS)  # fresh Pro discriminator when no D is given
    paths = task.export_original(params, tmp_path / "export", 1, 1, buffers=info["buffers"], hparams=info["hparams"])
    head, obj = torch_load_like_the_original(paths["weights"])
    assert head == b"05" and obj["config"].model.version == "v2Pro"
    assert gsv_jax.load_s2(paths["weights"]).version == "v2Pro"


def test_mismatched_starting_files_are_refused(task, official, tmp_path):
    # the v2ProPlus file for a v2Pro config: the version is named with the right preset
    with pytest.raises(TrainingSetupError, match="is a SoVITS v2ProPlus model but the config trains v2Pro; use --config s2_v2proplus"):
        make_task("v2Pro").params_from_original(official["G"])
    # a v1/v2 discriminator (5 period discriminators) for a Pro model: the missing ones are listed
    d_sd = load_torch_file(official["D"])["weight"]
    v2_d = tmp_path / "s2D_v2_like.pth"
    save_torch_file({"weight": {k: v for k, v in d_sd.items()
                                if not k.startswith(("discriminators.6.", "discriminators.7."))}}, v2_d)
    with pytest.raises(Exception, match="discriminators.6"):
        task.params_from_original(official["G"], v2_d)


@pytest.mark.heavy  # compiles the Pro GAN step at the golden's widths (minutes on 2 cores)
def test_train_py_fine_tunes_from_official_pro_files(tmp_path, official):
    """``train.py --config s2_v2proplus --init-from s2Gv2ProPlus.pth s2Dv2ProPlus.pth`` on an original
    experiment folder with ``7-sv_cn``, 2 steps, exports the original reads; the weights moved."""
    from gsv_jax.io.torch_io import save_torch_file as save
    from tests.train.test_train_cli import _s2_experiment, _train

    exp, work = tmp_path / "exp", tmp_path / "run"
    _s2_experiment(exp, n=4)
    (exp / "7-sv_cn").mkdir()
    rs = np.random.RandomState(0)
    for i in range(4):
        save((rs.randn(1, 20480) * 0.1).astype(np.float32), exp / "7-sv_cn" / f"u{i}.wav.pt")
    m = golden_model_config()
    arch = [f"--config.model.{k}={v!r}".replace("[", "(").replace("]", ")") if isinstance(v, list)
            else f"--config.model.{k}={v}"
            for k, v in m.items() if k in {f.name for f in dataclasses.fields(S2ModelConfig)} and k != "version"]
    out = _train(["--config", "s2_v2proplus", "--workdir", str(work), "--init-from", str(official["G"]),
                  str(official["D"]), f"--config.data.exp_dir={exp}", "--config.train.batch_size=2",
                  "--config.train.num_steps=2", "--config.train.log_every=1", "--config.model.segment_size=8",
                  "--config.data.boundaries=(32, 64)", "--config.train.progress_bar=False",
                  "--config.train.tensorboard=False", f"--config.train.disc_width_div={WIDTH_DIV}", *arch],
                 devices=1, timeout=1500)
    assert "fine-tuning from" in out, out[-2000:]
    export = work / "export"
    weights = next(export.glob("gsv_jax_e*_s2.pth"))
    head, obj = torch_load_like_the_original(weights)
    assert head == b"06" and obj["config"].model.version == "v2ProPlus"
    _, ref = torch_load_like_the_original(golden_path(GOLDEN_G))
    assert sorted(obj["weight"]) == sorted(ref["weight"])
    moved = max(float((obj["weight"][k].float() - v.float()).abs().max()) for k, v in ref["weight"].items())
    assert moved > 1e-4, "two steps did not change the generator"
    _, d_ckpt = torch_load_like_the_original(export / "D_2.pth")
    assert sorted(d_ckpt["model"]) == sorted(expected_d_keys())
    import gsv_jax

    assert gsv_jax.load_s2(weights).version == "v2ProPlus"
