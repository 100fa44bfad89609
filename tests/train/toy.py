"""A toy task (tiny MLP language model with logical axis names) and a synthetic, checkpointable
data iterator, to test the model-agnostic training machinery quickly."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.train.task import Task

VOCAB, WIDTH, SEQ = 16, 32, 8


class ToyLM(nn.Module):
    @nn.compact
    def __call__(self, ids, train: bool = True):
        emb = self.param("emb", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
                         (VOCAB, WIDTH))
        x = emb[ids]
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        h = nn.Dense(4 * WIDTH, kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
        h = nn.Dropout(0.1, deterministic=not train)(nn.relu(h))
        x = x + nn.Dense(WIDTH, kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", "embed")),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(h)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (1,))
        return (x * scale) @ emb.T


class ToyTask(Task):
    def __init__(self):
        self.model = ToyLM()

    def init_params(self, rng):
        return self.model.init(rng, jnp.zeros((2, SEQ), jnp.int32), train=False)["params"]

    def loss_fn(self, params, batch, rng, train=True):
        logits = self.model.apply({"params": params}, batch["x"], train=train, rngs={"dropout": rng})
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        nll = -jnp.take_along_axis(logp, batch["y"][..., None], axis=-1)[..., 0]
        loss = jnp.mean(nll)
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32))
        return loss, {"acc": acc, "tokens": jnp.asarray(batch["y"].size, jnp.float32)}

    def batch_spec(self, batch_size):
        s = jax.ShapeDtypeStruct((batch_size, SEQ), jnp.int32)
        return {"x": s, "y": s}


class ToyData:
    """Deterministic batches: y = (x + 1) mod VOCAB; state = position."""

    def __init__(self, batch_size: int, seed: int = 0):
        self.batch_size, self.seed, self.pos = batch_size, seed, 0

    def __iter__(self):
        return self

    def __next__(self):
        rs = np.random.RandomState(self.seed * 100003 + self.pos)
        self.pos += 1
        x = rs.randint(0, VOCAB, size=(self.batch_size, SEQ)).astype(np.int32)
        return {"x": x, "y": ((x + 1) % VOCAB).astype(np.int32)}

    def get_state(self):
        return {"pos": self.pos}

    def set_state(self, state):
        self.pos = int(state["pos"])
