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
    # them (docs/s1.md, "Padding-mask quirk").  False reproduces that exactly (needed for parity); True shifts each
    # row's text to the right end and masks the real padding (what the original intends).
    m.corrected_mask = False
    m.dtype = "float32"  # activation dtype; parameters stay float32
    m.update(overrides)
    return m


def training_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Training sub-configs (``data``, ``optim``, ``train``, ``mesh``; read by ``train.py``).

    Defaults = the original S1 recipe: ScaledAdam, lr 0.01 for the first update then 0.002
    (docs/training.md, "Learning rate"), batch 8 with 4 batches accumulated per update, loss summed.
    """
    d = config.data
    d.dataset = ""  # a folder written by gsv_jax.data.format ...
    d.exp_dir = ""  # ... or the original's prepared experiment folder (2-name2text.txt, 3-bert/, 6-name2semantic.tsv)
    d.version = "v2"  # phoneme table for exp_dir
    d.hz = 25
    d.min_pps = 3.0
    d.max_pps = 25.0
    d.y_buckets = (64, 128, 192, 256, 384, 512, 768, 1024, 1352)
    d.x_buckets = (32, 64, 96, 128, 192, 256, 384, 544)
    d.num_threads = 4

    o = config.optim = ml_collections.ConfigDict()
    o.name = "scaled_adam"  # or "adamw" (new pretraining)
    o.schedule = "original"  # 0.01 then 0.002 (what the original really does); "warmup_cosine"; "constant"
    o.lr = 0.01
    o.locked_lr = 0.002
    o.betas = (0.9, 0.95)
    o.clipping_scale = 2.0
    o.clipping_update_period = 1000
    o.warmup_steps = 2000
    o.total_steps = 40000
    o.init_lr = 1e-5
    o.end_lr = 1e-4
    o.weight_decay = 0.01

    t = config.train = ml_collections.ConfigDict()
    t.batch_size = 8  # items per forward (global over all hosts)
    t.accum_steps = 4  # forwards per optimizer update (the original steps every 4 batches)
    t.accum_reduce = "sum"
    t.grad_clip = 0.0  # the original passes no clipping (ScaledAdam clips by itself)
    t.num_steps = 10000  # optimizer updates
    t.log_every = 10
    t.save_every = 500
    t.keep = 3
    t.seed = 1234
    t.compute_dtype = "float32"  # "bfloat16" on TPU/GPU; parameters and losses stay float32
    t.fix_padding_mask = True  # docs/s1.md "Padding-mask quirk": train with the mask the original intends
    t.dropout_rng = "hash"  # dropout mask stream: "hash" (cheap counter hash) or "threefry" (JAX's default)
    t.remat = "none"  # "dots": recompute all but the weight-matmul outputs in the backward pass
    t.async_checkpoint = True
    t.progress_bar = True
    t.tensorboard = True

    m = config.mesh = ml_collections.ConfigDict()
    m.data = -1  # -1 = all remaining devices
    m.fsdp = 1
    m.tensor = 1
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config()
    config.data = ml_collections.ConfigDict({"max_sec": 54, "pad_val": 1024})
    return training_config(config)
