"""``train.py --compile-only`` for pretraining (docs/pretraining.md): the S2 GAN step with the
trainable codebook compiled ahead of time for 8 fake CPU devices (heavy: one S2 compile), the
report of a step the TPU compiler refuses for lack of memory, and the peak-rate estimate."""
import json

import pytest

from gsv_jax.train import aot
from tests.train.test_train_errors import run, train_cli  # noqa: F401 - fixtures


@pytest.mark.heavy
def test_s2_pretrain_compile_only_reports_memory_and_flops(run):  # noqa: F811
    code, out, err = run("--config", "s2_tiny", "--compile-only", "--ty", "40",
                         "--config.model.freeze_quantizer=False", "--config.model.segment_size=8",
                         "--config.train.batch_size=8", "--config.train.disc_width_div=4", "--config.mesh.data=8")
    assert code == 0, err
    report = json.loads(out[out.index("{"):])
    assert report["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert (report["batch"], report["frames"], report["text_len"]) == (8, 40, 32)
    assert report["freeze_quantizer"] is False
    assert report["params"] > 0 and report["peak_estimate_bytes"] > 0 and report["flops"] > 0
    assert "step_seconds_at_peak" not in report  # no TPU topology, no peak rate


class _Lowered:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        return self.cost


def test_out_of_memory_report():
    msg = ("jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required "
           "for HLO temporaries (22.64G) exceeds available HBM (15.75G).")
    rep = aot.out_of_memory_report(msg, _Lowered({"flops": 6.4e12}), 64)
    assert rep["fits"] is False and rep["compile_error"].startswith("RESOURCE_EXHAUSTED")
    assert rep["temp_required_bytes"] == int(22.64 * 2**30)
    assert rep["flops"] == pytest.approx(1e11) and rep["flops_source"] == "unpartitioned HLO / devices"
    rep = aot.out_of_memory_report(msg, _Lowered(None), 64)  # TPU lowerings have no cost analysis
    assert "flops" not in rep and "cost_error" in rep


def test_topology_names_and_peaks():
    assert aot.topology_name("v5e-64") == ("v5e:8x8", 16.0)
    assert aot.topology_name("v6e-64") == ("v6e:8x8", 32.0)
    assert aot.topology_name("v5p-128") == ("v5p:4x4x4", 95.0)  # v5p-N counts TensorCores, 2 per chip
    assert set(aot.PEAK_BF16_FLOPS) == set(aot.TPU_GENERATIONS)
