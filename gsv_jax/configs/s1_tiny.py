"""Tiny S1 preset for tests: the shape of the golden ``s1_v2_tiny.ckpt`` (2 layers, width 64, 4 heads)."""
import ml_collections

from gsv_jax.configs import s1_v2


def get_config() -> ml_collections.ConfigDict:
    config = s1_v2.get_config()
    config.model.update(embedding_dim=64, hidden_dim=64, head=4, n_layer=2, linear_units=256)
    return config
