"""Config presets (``gsv_jax/configs/``): found by name or path, keys = the fields of the dataclasses
that hold the defaults, no preset repeats a default; and ``gsv_jax/train`` imports no inference wrapper."""
import ast
import dataclasses
import pathlib

import pytest

from gsv_jax import configs
from gsv_jax.configs import config_fields, read_section
from gsv_jax.data.pipeline import S1DataConfig
from gsv_jax.data.s2_pipeline import S2DataConfig
from gsv_jax.models.s1 import S1Dims
from gsv_jax.models.s2.synthesizer import S2ModelConfig
from gsv_jax.train.mesh import MeshConfig
from gsv_jax.train.optim import S1OptimConfig
from gsv_jax.train.s1_task import S1Task, S1TrainConfig
from gsv_jax.train.s2_task import S2OptimConfig, S2Task, S2TrainConfig
from gsv_jax.train.task import task_class

REPO = pathlib.Path(__file__).resolve().parents[2]
SECTIONS = {
    "s1": {"data": S1DataConfig, "optim": S1OptimConfig, "train": S1TrainConfig, "mesh": MeshConfig},
    "s2": {"model": S2ModelConfig, "data": S2DataConfig, "optim": S2OptimConfig, "train": S2TrainConfig,
           "mesh": MeshConfig},
}


def test_presets_by_name_or_path(tmp_path):
    assert set(configs.presets()) >= {"s1_tiny", "s1_v1", "s1_v2", "s2_tiny", "s2_v1", "s2_v2"}
    assert configs.resolve("s2_v2") == configs.resolve("s2_v2.py") == configs.PRESET_DIR / "s2_v2.py"
    own = tmp_path / "mine.py"
    own.write_text("from gsv_jax.configs import s1_v2\n\ndef get_config():\n    c = s1_v2.get_config()\n"
                   "    c.train.batch_size = 3\n    return c\n")
    assert configs.resolve(own) == own and configs.load(own).train.batch_size == 3
    with pytest.raises(FileNotFoundError, match=r"--config s2_v3: .*in gsv_jax/configs/: ") as e:
        configs.resolve("s2_v3")
    assert all(name in str(e.value) for name in configs.presets())
    with pytest.raises(FileNotFoundError, match="is a folder"):
        configs.resolve(tmp_path)


@pytest.mark.parametrize("name", configs.presets())
def test_config_keys_are_the_dataclass_fields(name):
    config = configs.load(name)
    family = name[:2]
    assert task_class(config.train.task) is {"s1": S1Task, "s2": S2Task}[family]
    for section, cls in SECTIONS[family].items():
        assert sorted(config[section].keys()) == sorted(config_fields(cls)), (name, section)
    if family == "s1":  # the original's model names, read by S1Dims
        S1Dims.from_config(config.model)


@pytest.mark.parametrize("name", ["s1_v2", "s2_v2"])
def test_the_main_presets_are_the_dataclass_defaults(name):
    """A default lives in its dataclass only: the v2 presets read back to the defaults, field for field."""
    config = configs.load(name)
    for section, cls in SECTIONS[name[:2]].items():
        assert read_section(cls, config[section]) == cls(), (name, section)
    if name == "s1_v2":
        assert S1Dims.from_config(config.model) == S1Dims()


def test_presets_override_only_what_differs():
    assert configs.load("s1_v1").model.phoneme_vocab_size == 512 and configs.load("s1_v1").data.version == "v1"
    assert configs.load("s2_v1").model.version == "v1"
    tiny = S2ModelConfig.from_mapping(configs.load("s2_tiny").model)
    assert (tiny.inter_channels, tiny.n_layers, tiny.resblock_kernel_sizes) == (32, 2, (3, 5))


def test_section_refuses_a_misspelt_override_and_types_none_fields():
    with pytest.raises(KeyError, match="batchsize"):
        configs.section(S1TrainConfig(), batchsize=3)
    data = configs.section(S2DataConfig())
    assert data.mel_fmax is None
    data.mel_fmax = 8000.0  # a None default still accepts its type
    assert read_section(S2DataConfig, data).mel_fmax == 8000.0
    assert "batch_size" not in data and "seed" not in data  # runtime fields, from config.train


def test_train_package_does_not_import_the_inference_wrappers():
    offenders = []
    for path in sorted((REPO / "gsv_jax" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("gsv_jax.inference")]
    assert not offenders, offenders


def test_task_contract_has_defaults_for_every_optional_method():
    from tests.train.toy import ToyTask

    task = ToyTask()  # implements only the three model-side methods
    assert task.host_init_params(0) is None
    assert callable(task.make_step_fn(None, None))
    assert dataclasses.asdict(task.step_config) == {"accum_steps": 1, "accum_reduce": "sum", "grad_clip": 0.0,
                                                    "remat": "none"}
    with pytest.raises(Exception, match="--compile-only is not available"):
        ToyTask.compile_only(None)
