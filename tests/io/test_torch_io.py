"""The torch-free checkpoint reader/writer against real original files and torch itself."""
import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from gsv_jax.io.torch_io import (
    CheckpointError,
    HParams,
    UnsafeCheckpointError,
    dumps_torch,
    load_torch_file,
    save_torch_file,
)


def _torch_with_utils():
    torch = pytest.importorskip("torch")
    if "utils" not in sys.modules or not hasattr(sys.modules["utils"], "HParams"):
        mod = types.ModuleType("utils")  # what the original repo provides to torch.load

        class _HP:
            def __init__(self, **kw):
                for k, v in kw.items():
                    setattr(self, k, _HP(**v) if isinstance(v, dict) else v)

        mod.HParams = _HP
        sys.modules["utils"] = mod
    return torch


@pytest.mark.parametrize("name,key", [("s1_v2_tiny.ckpt", "weight"), ("s2_v2_tiny.pth", "weight"),
                                      ("s2_train_tiny_D.pth", "model")])
def test_reader_matches_torch_load(golden, name, key):
    torch = _torch_with_utils()
    ours = load_torch_file(golden(name))
    ref = torch.load(golden(name), map_location="cpu", weights_only=False)
    assert list(ours[key]) == list(ref[key])
    for k, t in ref[key].items():
        assert ours[key][k].dtype == np.dtype(str(t.numpy().dtype))
        np.testing.assert_array_equal(ours[key][k], t.numpy(), err_msg=k)


def test_s2_config_is_hparams(golden):
    obj = load_torch_file(golden("s2_v2_tiny.pth"))
    cfg = obj["config"]
    assert isinstance(cfg, HParams)
    assert cfg.data.hop_length == 640 and cfg["model"]["upsample_rates"] == [10, 8, 2, 2, 2]


@pytest.mark.parametrize("head", [None, b"05"])
def test_writer_round_trip_through_torch(golden, tmp_path, head):
    torch = _torch_with_utils()
    obj = load_torch_file(golden("s2_v2_tiny.pth"))
    out = tmp_path / "x.pth"
    save_torch_file(obj, out, head=head)
    data = out.read_bytes()
    assert data[:2] == (head or b"PK")
    again, got_head = load_torch_file(out, return_head=True)
    assert got_head == (head or b"PK")
    assert again["config"] == obj["config"] and again["info"] == obj["info"]
    ref = torch.load(io.BytesIO(b"PK" + data[2:]), map_location="cpu", weights_only=False)
    for k, v in obj["weight"].items():
        np.testing.assert_array_equal(again["weight"][k], v)
        np.testing.assert_array_equal(ref["weight"][k].numpy(), v)
    assert vars(ref["config"].model) == obj["config"].model.to_dict()


def test_writer_handles_views_scalars_and_dtypes(tmp_path):
    torch = _torch_with_utils()
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    obj = {"t": base.T, "s": np.float32(3.0), "i": np.arange(3), "b": np.array([True, False]),
           "h": base.astype(np.float16), "nested": [{"x": np.zeros((0, 2))}], "n": None}
    save_torch_file(obj, tmp_path / "a.pt")
    ref = torch.load(tmp_path / "a.pt", weights_only=True)
    np.testing.assert_array_equal(ref["t"].numpy(), base.T)
    assert ref["s"] == 3.0 and ref["h"].dtype == torch.float16 and ref["b"].dtype == torch.bool
    back = load_torch_file(tmp_path / "a.pt")
    np.testing.assert_array_equal(back["t"], base.T)
    assert back["nested"][0]["x"].shape == (0, 2)


def _zip_with_pickle(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_refuses_arbitrary_globals_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(_zip_with_pickle(pickle.dumps({"weight": Evil()}, protocol=2)))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_torch_file(path)
    assert not marker.exists()


def test_clear_errors_for_bad_files(tmp_path, golden):
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "missing.ckpt")
    (tmp_path / "text.ckpt").write_text("hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_torch_file(tmp_path / "text.ckpt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="legacy"):
        load_torch_file(tmp_path / "legacy.pt")
    data = golden("s1_v2_tiny.ckpt").read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        load_torch_file(tmp_path / "trunc.ckpt")
    with pytest.raises(CheckpointError, match="empty"):
        (tmp_path / "empty.ckpt").write_bytes(b"")
        load_torch_file(tmp_path / "empty.ckpt")


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "w.pth"
    save_torch_file({"a": np.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_torch_file({"a": np.array(["str"])}, path)  # unsupported dtype fails mid-way
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]
    assert dumps_torch({"a": np.ones(1)})[:2] == b"PK"
