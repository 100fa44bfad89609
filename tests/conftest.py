"""Shared test fixtures: golden files, tolerances, fake multi-device CPU.

Golden files live in ``../shared/golden`` (or ``$GSV_GOLDEN_DIR``). Outside CI a test that needs
them is skipped with a reason when the folder is missing; under ``CI=true`` it fails instead.
"""
import os
import pathlib

# Eight fake CPU devices for sharding tests; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def golden_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GSV_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


def golden_path(name: str) -> pathlib.Path:
    """Path of a golden file; skip (or fail under CI) when it is not there."""
    path = golden_dir() / name
    if not path.exists():
        msg = f"golden file {path} not found (set GSV_GOLDEN_DIR or put ../shared/golden beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def golden():
    """``golden("s1_v2_tiny.npz")`` -> pathlib.Path, with skip/fail handling."""
    return golden_path


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs_after_each_file():
    """A worker runs many test files; without this it keeps every file's compiled executables and
    traced functions (GBs at full suite size) and two workers together exhaust this machine's memory."""
    yield
    import gc

    jax.clear_caches()
    gc.collect()
