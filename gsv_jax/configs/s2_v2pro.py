"""S2 (SoVITS) v2Pro preset: the original's ``configs/s2v2Pro.json`` (v2 with gin 1024, dropout 0 and the
speaker-verification fusion; each utterance needs its ERes2NetV2 embedding, ``data/prepare.py``)."""
import ml_collections

from gsv_jax.configs import s2_v2


def get_config() -> ml_collections.ConfigDict:
    config = s2_v2.get_config()
    config.model.version = "v2Pro"
    config.model.gin_channels = 1024
    config.model.p_dropout = 0.0
    return config
