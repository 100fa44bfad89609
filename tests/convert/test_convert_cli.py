"""`python -m gsv_jax.convert`: both directions for S1 and S2 on the golden files: every tensor, the
source's key order and config fields survive our format; --verify; the umask; bad arguments."""
import os

import jax
import numpy as np
import pytest

import gsv_jax
from gsv_jax.convert.__main__ import VerifyError, main, verify_written
from gsv_jax.io.torch_io import load_torch_file, save_torch_file


def _plain(cfg):
    return cfg.to_dict() if hasattr(cfg, "to_dict") else cfg


def _round_trip(src, jax_dst, torch_dst, capsys):
    assert main(["to-jax", str(src), str(jax_dst)]) == 0
    assert "not re-read (add --verify" in capsys.readouterr().out  # says plainly that nothing was checked
    assert main(["to-torch", str(jax_dst), str(torch_dst), "--verify"]) == 0
    assert "tensors identical to the model (fp16, same order)" in capsys.readouterr().out
    a, b = load_torch_file(src), load_torch_file(torch_dst)
    assert list(a["weight"]) == list(b["weight"])  # the original's key order
    for k in a["weight"]:
        np.testing.assert_array_equal(a["weight"][k], b["weight"][k], err_msg=k)  # exact (tolerance 0)
        assert a["weight"][k].dtype == b["weight"][k].dtype, k
    assert _plain(a["config"]) == _plain(b["config"])  # every config field, the training ones too
    assert a["info"] == b["info"]


def test_s1_round_trip(golden, tmp_path, capsys):
    _round_trip(golden("s1_v2_tiny.ckpt"), tmp_path / "s1.gsv", tmp_path / "s1.ckpt", capsys)


def test_s2_round_trip(golden, tmp_path, capsys):
    _round_trip(golden("s2_v2_tiny.pth"), tmp_path / "s2", tmp_path / "s2.pth", capsys)
    assert gsv_jax.load_s2(tmp_path / "s2").version == "v2"
    assert sorted(p.name for p in (tmp_path / "s2").iterdir()) == ["s2_config.json", "s2_params.npz"]  # no temp left


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(golden, tmp_path, umask):
    old = os.umask(umask)
    try:
        for src, mid, dst in ((golden("s1_v2_tiny.ckpt"), tmp_path / "s1.gsv", tmp_path / "s1.ckpt"),
                              (golden("s2_v2_tiny.pth"), tmp_path / "s2", tmp_path / "s2.pth")):
            assert main(["to-jax", str(src), str(mid)]) == 0
            assert main(["to-torch", str(mid), str(dst)]) == 0
    finally:
        os.umask(old)
    files = [tmp_path / "s1.gsv", tmp_path / "s1.ckpt", tmp_path / "s2.pth", *(tmp_path / "s2").iterdir()]
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, (f, oct(f.stat().st_mode))


def test_verify_catches_a_changed_tensor(golden, tmp_path, capsys):
    src = golden("s2_v2_tiny.pth")
    model = gsv_jax.load_s2(src)
    dst = tmp_path / "s2.pth"
    assert main(["to-torch", str(src), str(dst), "--verify"]) == 0
    obj = load_torch_file(dst)
    key = list(obj["weight"])[5]
    obj["weight"][key] = obj["weight"][key].copy()
    obj["weight"][key].flat[0] += 1
    save_torch_file(obj, dst)
    with pytest.raises(VerifyError, match=f"tensor {key} differs"):
        verify_written("s2", "to-torch", model, dst)
    obj["weight"] = dict(reversed(list(obj["weight"].items())))
    save_torch_file(obj, dst)
    with pytest.raises(VerifyError, match="another order"):
        verify_written("s2", "to-torch", model, dst)

    s1 = gsv_jax.load_s1(golden("s1_v2_tiny.ckpt"))
    assert main(["to-jax", str(golden("s1_v2_tiny.ckpt")), str(tmp_path / "s1.gsv"), "--verify"]) == 0
    assert "31 tensors identical" in capsys.readouterr().out
    leaves, tree = jax.tree_util.tree_flatten(s1.params)
    s1.params = jax.tree_util.tree_unflatten(tree, [np.asarray(leaves[0]) + 1, *leaves[1:]])
    with pytest.raises(VerifyError, match="differs"):
        verify_written("s1", "to-jax", s1, tmp_path / "s1.gsv")


def test_errors(golden, tmp_path, capsys):
    def error(*argv):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        return err

    assert "not found" in error("to-jax", tmp_path / "missing.ckpt", tmp_path / "x")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    assert "not a PyTorch checkpoint" in error("to-jax", tmp_path / "junk.ckpt", tmp_path / "x")
    s1, s2 = golden("s1_v2_tiny.ckpt"), golden("s2_v2_tiny.pth")
    assert "same path" in error("to-torch", s1, s1)
    assert "is a folder; to-torch writes one file" in error("to-torch", s2, tmp_path)
    assert "is a folder; an S1 checkpoint of ours is one file" in error("to-jax", s1, tmp_path)
    assert "is a file; an S2 checkpoint of ours is a folder" in error("to-jax", s2, tmp_path / "junk.ckpt")
    assert "without s2_config.json" in error("to-torch", tmp_path, tmp_path / "y.pth")
    with pytest.raises(SystemExit):
        main(["sideways", "a", "b"])
