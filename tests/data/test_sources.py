"""Training data source selection shared by the S1 and S2 tasks."""
import ml_collections
import pytest

from gsv_jax.data.sources import open_training_reader


def test_exp_dir_uses_the_original_reader_and_missing_source_is_explained(tmp_path):
    seen = []
    reader = open_training_reader(ml_collections.ConfigDict({"exp_dir": str(tmp_path)}),
                                  lambda folder: seen.append(folder) or "original-reader")
    assert reader == "original-reader" and seen == [str(tmp_path)]
    with pytest.raises(ValueError, match="exp_dir"):
        open_training_reader(ml_collections.ConfigDict({"dataset": "", "exp_dir": ""}), lambda f: None)
    with pytest.raises(FileNotFoundError, match="data/prepare.py"):
        open_training_reader(ml_collections.ConfigDict({"dataset": str(tmp_path / "none")}), lambda f: None)
