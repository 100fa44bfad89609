"""S1 pretraining from scratch on the semantic tokens of a new S2 (docs/pretraining.md).

The ``s1_v2`` architecture with the new-pretraining recipe: AdamW (weight decay 0.01) with a linear
warm-up and cosine decay, bfloat16 compute on accelerators (parameters, optimiser state and losses
stay float32), a large global batch without accumulation, data x FSDP mesh for the 24-layer model.
"""
import ml_collections

from gsv_jax.configs import s1_v2


def get_config() -> ml_collections.ConfigDict:
    config = s1_v2.get_config()
    config.optim.name = "adamw"
    config.optim.schedule = "warmup_cosine"
    config.optim.lr = 6e-4  # peak
    config.optim.init_lr = 1e-6
    config.optim.end_lr = 6e-5
    config.optim.warmup_steps = 2000
    config.optim.total_steps = 100_000
    config.optim.weight_decay = 0.01
    config.train.batch_size = 256  # global
    config.train.accum_steps = 1
    config.train.num_steps = 100_000
    config.train.save_every = 2000
    config.train.compute_dtype = "bfloat16"
    config.mesh.data = -1
    config.mesh.fsdp = 1  # set to the chips per host (or more) for FSDP
    return config
