"""Where training data comes from: our dataset format or the original's prepared experiment folder."""
from __future__ import annotations

from collections.abc import Callable


def open_training_reader(data_config, open_original: Callable[[str], object]):
    """``config.data.dataset`` (a folder written by :mod:`gsv_jax.data.format`) or ``config.data.exp_dir``
    (the original's experiment folder, opened with ``open_original``) -> a random-access reader."""
    if data_config.get("exp_dir"):
        return open_original(data_config.exp_dir)
    if data_config.get("dataset"):
        from gsv_jax.data.format import open_dataset

        return open_dataset(data_config.dataset)
    raise ValueError("config.data needs 'dataset' (a folder written by gsv_jax.data.format) or 'exp_dir' "
                     "(the original's prepared experiment folder), e.g. --config.data.exp_dir=logs/myexp")
