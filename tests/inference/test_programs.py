"""The on-disk compiled-program store (gsv_jax.inference.programs): a second process (here: a fresh wrapper)
runs a stored program without tracing, results equal the plain jit, bad files are rebuilt."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.inference import programs


@pytest.fixture
def store(tmp_path):
    folder = programs.enable(tmp_path / "programs")
    yield folder
    programs.disable()


def _make(traces, salt="s"):
    def f(x, y, *, n):
        traces.append(x.shape)
        return {"a": x @ y * n, "b": jnp.sum(x)}

    return programs.cached_jit(f, "test_f", salt, static_argnames=("n",))


def test_disabled_is_plain_jit():
    programs.disable()
    traces = []
    f = _make(traces)
    x = np.ones((2, 3), np.float32)
    y = np.ones((3, 2), np.float32)
    out = f(x, y, n=2)
    f(x, y, n=2)
    assert len(traces) == 1 and float(out["b"]) == 6.0
    assert programs.folder() is None


def test_stored_program_runs_without_tracing(store):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = rng.normal(size=(5, 3)).astype(np.float32)
    traces = []
    first = _make(traces)(x, y, n=3)
    assert len(traces) == 1 and len(list(store.glob("test_f-*.xla"))) == 1
    fresh_traces = []
    fresh = _make(fresh_traces)  # as in a new process: nothing in memory
    again = fresh(x, y, n=3)
    assert fresh_traces == []  # loaded from disk: not traced, not compiled
    np.testing.assert_array_equal(np.asarray(again["a"]), np.asarray(first["a"]))
    np.testing.assert_allclose(np.asarray(again["a"]), x @ y * 3, rtol=1e-5, atol=1e-5)
    assert fresh._cache_size() == 1
    # another shape, another static value, another salt: new programs
    fresh(x[:2], y, n=3)
    fresh(x, y, n=4)
    _make(fresh_traces, salt="other")(x, y, n=3)
    assert len(fresh_traces) == 3 and len(list(store.glob("test_f-*.xla"))) == 4


def test_dynamic_keyword_arguments_are_refused(store):
    f = _make([])
    with pytest.raises(TypeError, match="positionally"):
        f(np.ones((2, 2), np.float32), y=np.ones((2, 2), np.float32), n=1)


def test_corrupt_file_is_rebuilt(store, caplog):
    x = np.ones((2, 2), np.float32)
    _make([])(x, x, n=1)
    (path,) = store.glob("test_f-*.xla")
    path.write_bytes(b"not a program")
    traces = []
    out = _make(traces)(x, x, n=1)
    assert len(traces) == 1 and "could not be loaded" in caplog.text
    np.testing.assert_array_equal(np.asarray(out["a"]), x @ x)
    assert path.read_bytes() != b"not a program"


def test_donated_state_program(store):
    def step(state, inc):
        return {"v": state["v"] + inc}

    f = programs.cached_jit(step, "test_donate", donate_argnums=(0,))
    s = {"v": jnp.zeros((3,))}
    s = f(s, jnp.ones((3,)))
    g = programs.cached_jit(step, "test_donate", donate_argnums=(0,))
    s = g(s, jnp.ones((3,)))
    np.testing.assert_array_equal(np.asarray(s["v"]), [2.0, 2.0, 2.0])


def test_cached_eval_shape(store):
    calls = []

    def init():
        calls.append(1)
        return {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,), jnp.int32)}

    a = programs.cached_eval_shape(init, "test_shapes", "cfg")
    b = programs.cached_eval_shape(init, "test_shapes", "cfg")
    assert len(calls) == 1
    assert jax.tree.map(lambda s: (s.shape, str(s.dtype)), a) == jax.tree.map(lambda s: (s.shape, str(s.dtype)), b)
    assert b["w"].shape == (3, 4) and b["b"].dtype == jnp.int32
