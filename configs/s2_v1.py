"""S2 (SoVITS) v1 preset: as v2 but 322 phoneme symbols and the full 1025-bin reference spectrogram."""
import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("_s2_v2", pathlib.Path(__file__).with_name("s2_v2.py"))
_v2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_v2)


def get_config():
    config = _v2.get_config()
    config.model.version = "v1"
    return config
