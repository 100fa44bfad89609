"""Activations shared by the Hugging Face-style encoders (BERT, HuBERT)."""
import jax
import numpy as np


def gelu_erf(x):
    """torch's exact GELU, ``x/2 (1 + erf(x/sqrt 2))``; cheaper in XLA:CPU than ``jax.nn.gelu``'s
    erfc form (the two are < 1e-6 apart)."""
    return x * 0.5 * (1.0 + jax.lax.erf(x * np.float32(0.7071067811865476)))


# Hugging Face ``hidden_act`` names
ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
