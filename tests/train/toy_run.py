"""Subprocess entry for the kill -9 / resume test: ``python -m tests.train.toy_run WORKDIR STEPS``."""
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_default_matmul_precision", "highest")

from gsv_jax.train.loop import LoopConfig, run
from gsv_jax.train.mesh import make_mesh
from gsv_jax.train.optim import original_s1_schedule, scaled_adam
from tests.train.toy import ToyData, ToyTask


def main(workdir, steps, save_every=3):
    sched = original_s1_schedule()
    cfg = LoopConfig(num_steps=steps, log_every=1, save_every=save_every, keep=2, progress_bar=False,
                     tensorboard=False)
    run(ToyTask(), scaled_adam(sched), sched, ToyData(8), workdir, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), cfg)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
