"""S2 (SoVITS v2) pretraining from scratch: the semantic codebook is learned (docs/pretraining.md).

The ``s2_v2`` preset with ``model.freeze_quantizer = False`` (k-means initialisation of the codebook
on the first batch, EMA updates and dead-code expiry, straight-through ``ssl_proj``, commitment
loss weight 1) and the original's ``s2.json`` optimiser (AdamW 1e-4, betas 0.8/0.99, per-epoch
decay 0.999875, c_mel 45). The batch is global and split over every device of the data axis; the
codebook statistics are summed over the global batch. S2 trains in float32 (the original's
quantizer runs outside autocast as well).
"""
import ml_collections

from gsv_jax.configs import s2_v2


def get_config() -> ml_collections.ConfigDict:
    config = s2_v2.get_config()
    config.model.freeze_quantizer = False
    config.train.batch_size = 64  # global; the original's 32 per GPU x 2 GPUs
    config.train.num_steps = 200_000
    config.train.save_every = 2000
    config.mesh.data = -1  # pure data parallelism (S2 is small; see S2TrainConfig.param_sharding)
    return config
