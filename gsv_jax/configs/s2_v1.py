"""S2 (SoVITS) v1 preset: as v2 but 322 phoneme symbols and the full 1025-bin reference spectrogram."""
import ml_collections

from gsv_jax.configs import s2_v2


def get_config() -> ml_collections.ConfigDict:
    config = s2_v2.get_config()
    config.model.version = "v1"
    return config
