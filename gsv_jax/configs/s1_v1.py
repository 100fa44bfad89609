"""S1 v1 preset (the original's ``s1longer.yaml``): as v2 but with the 512-symbol v1 phoneme table."""
import ml_collections

from gsv_jax.configs import s1_v2


def get_config() -> ml_collections.ConfigDict:
    config = s1_v2.get_config()
    config.model.phoneme_vocab_size = 512
    config.data.version = "v1"  # phoneme table of the original's experiment folders
    return config
