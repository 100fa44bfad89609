"""`python -m gsv_jax.convert`: both directions for S1 and S2 on the golden files."""
import numpy as np
import pytest

import gsv_jax
from gsv_jax.convert.__main__ import main
from gsv_jax.io.torch_io import load_torch_file


def _round_trip(src, jax_dst, torch_dst):
    assert main(["to-jax", str(src), str(jax_dst)]) == 0
    assert main(["to-torch", str(jax_dst), str(torch_dst)]) == 0
    a, b = load_torch_file(src)["weight"], load_torch_file(torch_dst)["weight"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    return list(a), list(b)


def test_s1_round_trip(golden, tmp_path):
    keys_in, keys_out = _round_trip(golden("s1_v2_tiny.ckpt"), tmp_path / "s1.gsv", tmp_path / "s1.ckpt")
    assert keys_in == keys_out


def test_s2_round_trip(golden, tmp_path):
    keys_in, keys_out = _round_trip(golden("s2_v2_tiny.pth"), tmp_path / "s2", tmp_path / "s2.pth")
    assert sorted(keys_in) == sorted(keys_out)
    assert gsv_jax.load_s2(tmp_path / "s2").version == "v2"


def test_errors(tmp_path, capsys):
    assert main(["to-jax", str(tmp_path / "missing.ckpt"), str(tmp_path / "x")]) == 2
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    assert main(["to-jax", str(tmp_path / "junk.ckpt"), str(tmp_path / "x")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sideways", "a", "b"])
