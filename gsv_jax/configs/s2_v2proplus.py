"""S2 (SoVITS) v2ProPlus preset: the original's ``configs/s2v2ProPlus.json`` (v2Pro with the wider
generator: 768 initial channels, first upsampling kernel 20)."""
import ml_collections

from gsv_jax.configs import s2_v2pro


def get_config() -> ml_collections.ConfigDict:
    config = s2_v2pro.get_config()
    config.model.version = "v2ProPlus"
    config.model.upsample_initial_channel = 768
    config.model.upsample_kernel_sizes = (20, 16, 8, 2, 2)
    return config
