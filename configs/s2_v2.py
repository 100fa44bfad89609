"""S2 (SoVITS) v2 preset: the original's ``configs/s2.json`` model section, 732 phoneme symbols.

``get_config()`` returns an ml_collections ConfigDict with ``model`` (architecture, field names as in
the original ``hps.model``; read by ``gsv_jax.models.s2.synthesizer.S2ModelConfig.from_mapping``) and
``data`` (audio front), plus ``optim``, ``train`` and ``mesh`` for training (S2 GAN task).
"""
import ml_collections


def model_config(**overrides) -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.version = "v2"  # "v1": 322 symbols, full 1025-bin reference; "v2": 732 symbols, first 704 bins
    m.inter_channels = 192
    m.hidden_channels = 192
    m.filter_channels = 768
    m.n_heads = 2
    m.n_layers = 6
    m.kernel_size = 3
    m.p_dropout = 0.1
    m.resblock = "1"
    m.resblock_kernel_sizes = [3, 7, 11]
    m.resblock_dilation_sizes = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    m.upsample_rates = [10, 8, 2, 2, 2]  # product = hop 640
    m.upsample_initial_channel = 512
    m.upsample_kernel_sizes = [16, 16, 8, 2, 2]
    m.gin_channels = 512
    m.semantic_frame_rate = "25hz"
    m.spec_channels = 1025  # filter_length // 2 + 1
    m.segment_size = 32  # training segment in frames (20480 samples // hop)
    m.update(overrides)
    return m


def data_config(**overrides) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.sampling_rate = 32000
    d.filter_length = 2048
    d.hop_length = 640
    d.win_length = 2048
    d.n_mel_channels = 128
    d.mel_fmin = 0.0
    d.mel_fmax = ml_collections.FieldReference(None, field_type=float)
    d.max_wav_value = 32768.0
    d.update(overrides)
    return d


def training_configs(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """S2 training (``python train.py --config configs/s2_v2.py``): the original ``s2.json`` train section."""
    config.data.update(dict(exp_dir="", dataset="", min_seconds=0.6, max_seconds=54.0,
                            boundaries=(32, 300) + tuple(range(400, 2000, 100)), text_multiple=32, num_threads=4))
    config.optim = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, betas=(0.8, 0.99), eps=1e-9, weight_decay=0.01,  # AdamW, decoupled decay
        lr_decay=0.999875, text_low_lr_rate=0.4, c_mel=45.0, c_kl=1.0, epoch_offset=0))
    config.train = ml_collections.ConfigDict(dict(
        task="s2", batch_size=8, num_steps=10000, log_every=10, save_every=1000, keep=3, seed=1234,
        dropout=True, disc_width_div=1, async_checkpoint=True, progress_bar=True, tensorboard=True))
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config()
    config.data = data_config()
    return training_configs(config)
