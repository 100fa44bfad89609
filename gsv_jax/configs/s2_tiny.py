"""Tiny S2 preset for tests: the shapes of ``../shared/golden/s2_v2_tiny.pth`` (widths fixed by the
original stay: hidden 192, gin 512, MRTE 512, SSL 768, codebook 1024x768)."""
import ml_collections

from gsv_jax.configs import s2_v2


def get_config() -> ml_collections.ConfigDict:
    config = s2_v2.get_config()
    config.model.update(dict(
        inter_channels=32, filter_channels=64, n_heads=2, n_layers=2, kernel_size=3,
        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
        upsample_initial_channel=64))
    return config
