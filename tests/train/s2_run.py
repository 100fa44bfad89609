"""Helper for the kill -9 test: tiny S2 training in a separate process (checkpoint every step).

    python tests/train/s2_run.py WORKDIR
"""
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax

jax.config.update("jax_default_matmul_precision", "highest")

from gsv_jax.train.loop import LoopConfig, run
from gsv_jax.train.mesh import mesh_from_config
from gsv_jax.train.s2_task import S2Task
from tests.train.test_s2_train import data_iter, tiny_config

if __name__ == "__main__":
    config = tiny_config(steps=12)
    config.train.save_every = 1
    task = S2Task.from_config(config)
    run(task, task.tx, lambda s: 0.0, data_iter(config), sys.argv[1], mesh_from_config(config),
        LoopConfig.from_config(config.train), on_log=lambda s, m: print(f"step {s}", flush=True))
