"""S2 (SoVITS) v2 preset: the original's ``configs/s2.json``, 732 phoneme symbols.

``get_config()`` returns an ml_collections ConfigDict: ``model`` (architecture, field names as in the
original ``hps.model``; read by ``S2ModelConfig.from_mapping``), ``data`` (source, audio front,
filters and buckets) and, for ``train.py``, ``optim``, ``train`` and ``mesh`` (S2 GAN task). Every
value comes from the dataclass defaults (see ``gsv_jax.configs``).
"""
import ml_collections

from gsv_jax.configs import section
from gsv_jax.data.s2_pipeline import S2DataConfig
from gsv_jax.models.s2.synthesizer import S2ModelConfig
from gsv_jax.train.mesh import MeshConfig
from gsv_jax.train.s2_task import S2OptimConfig, S2TrainConfig


def model_config(**overrides) -> ml_collections.ConfigDict:
    """:class:`S2ModelConfig` fields (v2 defaults) with ``overrides``."""
    return section(S2ModelConfig(), **overrides)


def data_config(**overrides) -> ml_collections.ConfigDict:
    """:class:`S2DataConfig` fields with ``overrides``."""
    return section(S2DataConfig(), **overrides)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config()
    config.data = data_config()
    config.optim = section(S2OptimConfig())
    config.train = section(S2TrainConfig())
    config.mesh = section(MeshConfig())
    return config
