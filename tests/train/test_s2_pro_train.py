"""S2 training for v2Pro/v2ProPlus on a tiny synthetic corpus: the utterances' speaker embeddings reach
the generator forward, the discriminator has the Pro periods [2, 3, 5, 7, 11, 17, 23], the loss falls,
and the export (G_*/D_*, weights with head 05) fine-tunes again.

Tiny generator (``s2_tiny`` shapes, gin 64, a 32-d ``sv_emb`` input instead of 20480), discriminator
at 1/4 width, as tests/train/test_s2_train.py. The cheapest loss test (one device, a v2ProPlus-shaped
generator with narrower widths, the discriminator at 1/8 width, two repeated items, lr 1e-2, 12 steps)
still compiles for ~2 minutes on 2 cores (the initialiser and the GAN step with 8 discriminators), so
it is ``heavy`` like the 10-step run through the training loop on 8 fake devices.
Fine-tuning from the official / training-checkpoint files: tests/train/test_s2_pro_finetune.py.
"""
import numpy as np
import pytest

from gsv_jax.data.s2_pipeline import InMemoryS2Reader, S2BatchIterator, S2DataConfig, collate
from gsv_jax.train.s2_task import S2Task
from tests.train.test_s2_train import corpus, tiny_config

SV_DIM = 32


def pro_config(steps=10):
    config = tiny_config(steps=steps)
    config.model.update(dict(version="v2Pro", gin_channels=64, sv_dim=SV_DIM, p_dropout=0.0))
    return config


def pro_corpus(n=6):
    items = corpus(n).items
    rs = np.random.RandomState(1)
    voices = rs.randn(2, SV_DIM).astype(np.float32)
    return InMemoryS2Reader([{**it, "sv_emb": voices[i % 2]} for i, it in enumerate(items)])


def test_batch_carries_the_embeddings_and_missing_ones_are_refused():
    r = pro_corpus()
    b = collate([r[0], r[1]], 48)
    assert b["sv_emb"].shape == (2, SV_DIM) and b["sv_emb"].dtype == np.float32
    with pytest.raises(ValueError, match="no sv_emb .*speaker-embedding stage"):
        collate([r[0], corpus()[1]], 48)


def test_pro_discriminator_periods():
    """The original's ``MultiPeriodDiscriminator(version="v2Pro*")``: DiscriminatorS + periods
    [2, 3, 5, 7, 11, 17, 23] (v2: [2, 3, 5, 7, 11]), read off the period discriminators' feature maps
    (``[B * period, frames, channels]``: each folds the waveform by its period)."""
    import jax
    import jax.numpy as jnp

    from gsv_jax.models.s2.discriminator import MultiPeriodDiscriminator

    def periods(version):
        disc = MultiPeriodDiscriminator(version, width_div=8)
        y = jnp.zeros((1, 4096))
        _, fmaps = jax.eval_shape(lambda: disc.apply(disc.init(jax.random.PRNGKey(0), y), y))
        return [f[0].shape[0] for f in fmaps[1:]]

    for version in ("v2Pro", "v2ProPlus"):
        assert periods(version) == [2, 3, 5, 7, 11, 17, 23], version
    assert periods("v2") == [2, 3, 5, 7, 11]


def test_pro_task_discriminator_and_batch_spec():
    task = S2Task.from_config(pro_config())
    assert task.disc.version == "v2Pro"
    spec = task.batch_spec(2)
    assert spec["sv_emb"].shape == (2, SV_DIM)
    import jax

    shapes = jax.eval_shape(task.init_params, jax.random.PRNGKey(0))
    import flax.linen as nn

    shapes = nn.meta.unbox(shapes)
    assert len(shapes["d"]) == 8  # DiscriminatorS + 7 period discriminators
    assert shapes["g"]["sv_emb"]["weight"].shape == (64, SV_DIM)


@pytest.mark.heavy  # the loop on 8 fake devices, GAN step with 8 discriminators: minutes on 2 cores (-m heavy)
def test_loss_falls_and_export_fine_tunes(tmp_path):
    import jax

    from gsv_jax.train.loop import LoopConfig, run
    from gsv_jax.train.mesh import mesh_from_config

    config = pro_config(steps=10)
    task = S2Task.from_config(config)
    dcfg = S2DataConfig.from_config(config.data, batch_size=config.train.batch_size, seed=1234)
    res = run(task, task.tx, lambda s: 0.0, S2BatchIterator(pro_corpus(), dcfg), str(tmp_path / "w"),
              mesh_from_config(config), LoopConfig.from_config(config.train))
    mel = [h["loss_mel"] for h in res.history]
    assert len(mel) == 10 and np.all(np.isfinite(mel))
    assert np.mean(mel[-3:]) < 0.97 * np.mean(mel[:3]), mel
    params = jax.device_get(res.state.params)
    paths = task.export_original(params, tmp_path / "export", 10, 1)
    with open(paths["weights"], "rb") as f:
        assert f.read(2) == b"05"  # the original's my_save2 head for v2Pro
    import gsv_jax

    s2 = gsv_jax.load_s2(paths["weights"])
    assert s2.version == "v2Pro" and s2.config.sv_dim == SV_DIM
    again, _info = task.params_from_original(paths["G"], paths["D"])
    for a, b in zip(jax.tree.leaves(params["d"]), jax.tree.leaves(again["d"])):
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)
    np.testing.assert_array_equal(again["g"]["sv_emb"]["weight"], np.asarray(params["g"]["sv_emb"]["weight"]))


def cheap_config(lr=1e-2):
    """v2ProPlus-shaped (first upsampling kernel 20, the speaker fusion), everything narrow, one device."""
    config = tiny_config(steps=12, lr=lr)
    config.model.update(dict(version="v2ProPlus", gin_channels=32, sv_dim=SV_DIM, p_dropout=0.0,
                             hidden_channels=64, filter_channels=64, upsample_initial_channel=48,
                             upsample_kernel_sizes=[20, 16, 8, 2, 2], resblock_kernel_sizes=[3],
                             resblock_dilation_sizes=[[1, 3]]))
    config.train.update(dict(batch_size=2, disc_width_div=8))
    config.mesh.update(dict(data=1, fsdp=1, tensor=1))
    return config


@pytest.mark.heavy  # ~2 min on 2 loaded cores: compiling the initialiser and the 8-discriminator GAN step
def test_loss_falls_on_two_repeated_items():
    """Pro GAN steps (the sv_emb Linear + PReLU + ge_to512 in the generator forward, 8 discriminators)
    on the same two utterances: the mel loss falls and the speaker-fusion weights are trained."""
    import flax.linen as nn
    import jax

    task = S2Task.from_config(cheap_config())
    assert task.disc.version == "v2ProPlus"
    r = pro_corpus(2)
    batch = collate([r[0], r[1]], 48)
    params = jax.jit(lambda k: nn.meta.unbox(task.init_params(k)))(jax.random.PRNGKey(0))
    opt = task.tx.init(params)
    sv0 = np.asarray(params["g"]["sv_emb"]["weight"]).copy()
    step = jax.jit(task.gan_update, donate_argnums=(0, 1))
    mel, disc = [], []
    for i in range(12):
        params, opt, m = step(params, opt, batch, jax.random.PRNGKey(i))
        mel.append(float(m["loss_mel"]))
        disc.append(float(m["loss_disc"]))
    assert np.all(np.isfinite(mel)) and np.all(np.isfinite(disc)), (mel, disc)
    assert np.mean(mel[-3:]) < 0.9 * np.mean(mel[:3]), mel
    moved = np.abs(np.asarray(params["g"]["sv_emb"]["weight"]) - sv0).max()
    assert moved > 1e-4, moved  # the embedding's projection gets gradients (it enters the forward)
