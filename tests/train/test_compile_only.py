"""``train.py --compile-only``: the sharded S1 step compiled ahead of time for this host's 8 fake devices
(conftest), report on stdout; bad topologies refused in one line (S2: tests/train/test_pretrain_compile_only.py)."""
import json

import pytest

from tests.train.test_train_errors import run, train_cli  # noqa: F401 - fixtures


def test_s1_compile_only_reports_memory_and_flops(run):  # noqa: F811
    code, out, err = run("--config", "s1_tiny", "--compile-only", "--tx", "32", "--ty", "64",
                         "--config.train.batch_size=8", "--config.train.accum_steps=1",
                         "--config.mesh.data=4", "--config.mesh.fsdp=2")
    assert code == 0, err
    report = json.loads(out[out.index("{"):])
    assert report["mesh"] == {"data": 4, "fsdp": 2, "tensor": 1}
    assert (report["batch"], report["tx"], report["ty"]) == (8, 32, 64)
    assert report["params"] > 0 and report["peak_estimate_bytes"] > 0 and report["flops"] > 0


@pytest.mark.parametrize("args, needle", [
    (("--config", "s1_tiny", "--compile-only", "--topology", "v9-16"), "--topology 'v9-16': use <generation>-<size>"),
])
def test_compile_only_refusals(run, args, needle):  # noqa: F811
    code, _, err = run(*args)
    assert code == 2 and err.strip().splitlines() == [f"error: {needle}" + err.strip().split(needle, 1)[1]]
