"""S1 v2 preset (the original's ``s1longer-v2.yaml``): 24 layers, width 512, 16 heads, 732 phonemes.

Used by v2, v3, v4, v2Pro and v2ProPlus. ``get_config()`` returns an ml_collections ConfigDict:
``model`` (architecture in the original's ``config["model"]`` names, read by ``S1Dims.from_config``
and written into exported ``.ckpt`` files) and, for ``train.py``, ``data``, ``optim``, ``train`` and
``mesh``. Every value comes from the dataclass defaults (see ``gsv_jax.configs``).
"""
import ml_collections

from gsv_jax.configs import section
from gsv_jax.data.pipeline import S1DataConfig
from gsv_jax.models.s1 import S1Dims
from gsv_jax.train.mesh import MeshConfig
from gsv_jax.train.optim import S1OptimConfig
from gsv_jax.train.s1_task import S1TrainConfig


def model_config(dims: S1Dims | None = None, **overrides) -> ml_collections.ConfigDict:
    """``config["model"]`` of the original for ``dims`` (default: :class:`S1Dims`), plus our options."""
    d = dims or S1Dims()
    m = ml_collections.ConfigDict()
    m.vocab_size = d.vocab_size  # semantic tokens 0..1023 plus EOS
    m.EOS = d.eos  # must be vocab_size - 1
    m.phoneme_vocab_size = d.phoneme_vocab_size
    m.embedding_dim = d.dim
    m.hidden_dim = d.dim
    m.head = d.heads
    m.n_layer = d.n_layer
    m.linear_units = 4 * d.dim  # unused by the original (FFN width is 4 * hidden_dim); kept for export
    m.dropout = d.token_dropout  # token-embedding dropout (config field of the original)
    m.hard_dropout = d.dropout_rate  # the original's hard-coded positional / attention / FFN dropouts
    # False reproduces the original's training mask exactly (parity); train.fix_padding_mask overrides it
    m.corrected_mask = d.corrected_mask
    m.dtype = d.dtype  # activation dtype; parameters stay float32
    m.update(overrides)
    return m


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config()
    config.data = section(S1DataConfig())
    config.optim = section(S1OptimConfig())
    config.train = section(S1TrainConfig())
    config.mesh = section(MeshConfig())
    return config
