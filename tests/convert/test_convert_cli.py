"""`python -m gsv_jax.convert`: both directions for S1 and S2 on the golden files."""
import numpy as np
import pytest

import gsv_jax
from gsv_jax.convert.__main__ import main
from gsv_jax.convert.torch_io import load_torch_file


def test_s1_round_trip(golden, tmp_path):
    src = golden("s1_v2_tiny.ckpt")
    assert main(["to-jax", str(src), str(tmp_path / "s1.gsv")]) == 0
    assert main(["to-torch", str(tmp_path / "s1.gsv"), str(tmp_path / "s1.ckpt")]) == 0
    a, b = load_torch_file(src)["weight"], load_torch_file(tmp_path / "s1.ckpt")["weight"]
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_s2_round_trip(golden, tmp_path):
    src = golden("s2_v2_tiny.pth")
    assert main(["to-jax", str(src), str(tmp_path / "s2")]) == 0
    assert main(["to-torch", str(tmp_path / "s2"), str(tmp_path / "s2.pth")]) == 0
    a, b = load_torch_file(src)["weight"], load_torch_file(tmp_path / "s2.pth")["weight"]
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert gsv_jax.load_s2(tmp_path / "s2").version == "v2"


def test_errors(tmp_path, capsys):
    assert main(["to-jax", str(tmp_path / "missing.ckpt"), str(tmp_path / "x")]) == 2
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    assert main(["to-jax", str(tmp_path / "junk.ckpt"), str(tmp_path / "x")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sideways", "a", "b"])
