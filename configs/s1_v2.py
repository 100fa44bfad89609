"""S1 v2 preset (the original's ``s1longer-v2.yaml``): 24 layers, width 512, 16 heads, 732 phonemes.

Used by v2, v3, v4, v2Pro and v2ProPlus.  ``get_config()`` returns an ml_collections ConfigDict
with a ``model`` sub-config (architecture, read by ``gsv_jax.models.s1.S1Model``); training adds
``data``, ``optim``, ``train`` and ``mesh``.
"""
import ml_collections


def model_config(**overrides) -> ml_collections.ConfigDict:
    """Architecture fields (names as in the original's ``config["model"]``) plus our options."""
    m = ml_collections.ConfigDict()
    m.vocab_size = 1025  # semantic tokens 0..1023 plus EOS
    m.EOS = 1024  # must be vocab_size - 1
    m.phoneme_vocab_size = 732
    m.embedding_dim = 512
    m.hidden_dim = 512
    m.head = 16
    m.n_layer = 24
    m.linear_units = 2048  # unused by the original (FFN width is 4 * hidden_dim); kept for export
    m.dropout = 0.0  # token-embedding dropout (config field of the original)
    m.hard_dropout = 0.1  # the original's hard-coded positional / attention / FFN dropouts
    # The original's training mask assumes left-padded phonemes while its data loader right-pads
    # them (spec s1.md §4.4).  False reproduces that exactly (needed for parity); True shifts each
    # row's text to the right end and masks the real padding (what the original intends).
    m.corrected_mask = False
    m.dtype = "float32"  # activation dtype; parameters stay float32
    m.update(overrides)
    return m


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config()
    config.data = ml_collections.ConfigDict({"max_sec": 54, "pad_val": 1024})
    return config
