"""The model families of GPT-SoVITS, one record per version: the one place for version facts.

Code that behaves differently per version asks this registry (``family(version).field``) instead
of comparing version strings. Adding a family means one record here plus its model module and its
converter (``docs/families.md``). The registry is plain data and imports nothing from the project,
so every layer (``text/``, ``audio``, ``models/``, ``convert/``, ``inference/``, ``train/``) may use it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

#: languages of the v1 symbol table and of the v2 table (every version after v1)
LANGUAGES_V1 = ("zh", "ja", "en")
LANGUAGES_V2 = ("zh", "ja", "en", "ko", "yue")
#: the language choices the original's inference offers per table (mixed and "all_" modes included)
UI_LANGUAGES_V1 = ("auto", "en", "zh", "ja", "all_zh", "all_ja")
UI_LANGUAGES_V2 = ("auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko")

#: the rate of S2's data: reference spectrograms, training clips, the VITS decoders' output
SOVITS_SAMPLE_RATE = 32000
#: hop of S2's linear spectrogram at that rate: two frames per 25 Hz semantic token
SOVITS_HOP = 640
#: HuBERT's input rate (semantic features, speaker-verification input)
SSL_SAMPLE_RATE = 16000

#: the discriminator periods of v1/v2 and of v2Pro*
PERIODS_V2 = (2, 3, 5, 7, 11)
PERIODS_PRO = (2, 3, 5, 7, 11, 17, 23)


@dataclasses.dataclass(frozen=True)
class Family:
    """The facts of one model version."""

    name: str                   #: "v1" | "v2" | "v2Pro" | "v2ProPlus" | "v3" | "v4"
    symbols: str                #: phoneme table: "v1" (322 symbols) or "v2" (732)
    n_symbols: int              #: rows of the S2 text embedding (= symbols in the table)
    s1_phoneme_vocab: int       #: rows of the S1 phoneme embedding (v1 pads its table to 512)
    languages: tuple            #: languages the frontend supports with this table
    ui_languages: tuple         #: language codes inference accepts (incl. "auto", "all_*")
    sample_rate: int            #: rate of the synthesized audio
    ref_sample_rate: int        #: rate the reference spectrogram is computed at
    spec_hop: int               #: hop of the reference spectrogram (25 Hz tokens = 2 frames)
    ref_bins: int               #: spectrogram bins the reference encoder reads (of 1025)
    gin_channels: int           #: width of the global (speaker/style) conditioning
    decoder: str                #: "hifigan" (VITS decoder inside S2) or "cfm" (mel + external vocoder)
    s1_preset: str              #: config preset for S1 (gsv_jax/configs/<name>.py)
    s2_preset: str | None    #: config preset for S2 training, None where training is not ported
    head: bytes | None       #: the 2-byte head the original's exporter writes (None: plain zip)
    lora_head: bytes | None  #: the head of its LoRA fine-tunes
    hashes: tuple               #: md5 of the first 8192 bytes of the official pretrained files
    extra_models: tuple         #: models its pipeline needs besides GPT/SoVITS/BERT/HuBERT
    periods: tuple              #: multi-period discriminator periods (training)
    converter: str              #: module with the state-dict <-> params maps
    model_module: str           #: module with the S2 network
    sample_steps: int | None = None  #: default CFM steps (v3/v4)
    supported: bool = True      #: whether this port runs it today

    @property
    def speaker_verification(self) -> bool:
        """Whether S2 needs the ERes2NetV2 speaker embedding of each reference (v2Pro*)."""
        return "sv" in self.extra_models

    @property
    def samples_per_token(self) -> int:
        """Output samples per 25 Hz semantic token."""
        return self.sample_rate // 25


_COMMON = dict(ref_sample_rate=SOVITS_SAMPLE_RATE, spec_hop=SOVITS_HOP, s1_preset="s1_v2", s1_phoneme_vocab=732, symbols="v2",
               n_symbols=732, languages=LANGUAGES_V2, ui_languages=UI_LANGUAGES_V2, ref_bins=704)

FAMILIES: Mapping[str, Family] = {f.name: f for f in (
    Family(name="v1", **{**_COMMON, "symbols": "v1", "n_symbols": 322, "s1_phoneme_vocab": 512,
                         "languages": LANGUAGES_V1, "ui_languages": UI_LANGUAGES_V1, "ref_bins": 1025,
                         "s1_preset": "s1_v1"},
           sample_rate=SOVITS_SAMPLE_RATE, gin_channels=512, decoder="hifigan", s2_preset="s2_v1", head=b"00", lora_head=None,
           hashes=(), extra_models=(), periods=PERIODS_V2, converter="gsv_jax.convert.s2",
           model_module="gsv_jax.models.s2.synthesizer"),
    Family(name="v2", **_COMMON, sample_rate=SOVITS_SAMPLE_RATE, gin_channels=512, decoder="hifigan", s2_preset="s2_v2",
           head=b"01", lora_head=None,
           hashes=("dc3c97e17592963677a4a1681f30c653", "6642b37f3dbb1f76882b69937c95a5f3"),
           extra_models=(), periods=PERIODS_V2, converter="gsv_jax.convert.s2",
           model_module="gsv_jax.models.s2.synthesizer"),
    Family(name="v2Pro", **_COMMON, sample_rate=SOVITS_SAMPLE_RATE, gin_channels=1024, decoder="hifigan", s2_preset="s2_v2pro",
           head=b"05", lora_head=None, hashes=("c7e9fce2223f3db685cdfa1e6368728a",), extra_models=("sv",),
           periods=PERIODS_PRO, converter="gsv_jax.convert.s2", model_module="gsv_jax.models.s2.synthesizer"),
    Family(name="v2ProPlus", **_COMMON, sample_rate=SOVITS_SAMPLE_RATE, gin_channels=1024, decoder="hifigan",
           s2_preset="s2_v2proplus", head=b"06", lora_head=None, hashes=("66b313e39455b57ab1b0bc0b239c9d0a",),
           extra_models=("sv",), periods=PERIODS_PRO, converter="gsv_jax.convert.s2",
           model_module="gsv_jax.models.s2.synthesizer"),
    Family(name="v3", **_COMMON, sample_rate=24000, gin_channels=512, decoder="cfm", s2_preset=None, head=b"02",
           lora_head=b"03", hashes=("43797be674a37c1c83ee81081941ed0f",), extra_models=("bigvgan",),
           periods=(), converter="gsv_jax.convert.v3", model_module="gsv_jax.models.s2.synthesizer_v3",
           sample_steps=32),
    Family(name="v4", **_COMMON, sample_rate=48000, gin_channels=512, decoder="cfm", s2_preset=None, head=None,
           lora_head=b"04", hashes=("4f26b9476d0c5033e04162c486074374",), extra_models=("vocoder_v4",),
           periods=(), converter="gsv_jax.convert.v3", model_module="gsv_jax.models.s2.synthesizer_v3",
           sample_steps=8),
)}

VERSIONS = tuple(FAMILIES)

#: every 2-byte head the original writes -> (version, is_lora); "PK" is a plain torch zip
HEADS: Mapping[bytes, tuple] = {
    **{f.head: (f.name, False) for f in FAMILIES.values() if f.head},
    **{f.lora_head: (f.name, True) for f in FAMILIES.values() if f.lora_head},
}
#: md5 of a file's first 8192 bytes -> version
HASHES: Mapping[str, str] = {h: f.name for f in FAMILIES.values() for h in f.hashes}


class UnknownVersionError(ValueError):
    """A version name that is not in the registry."""


def family(version: str | None) -> Family:
    """The record of ``version`` (None -> v2, the default of every tool)."""
    if version is None:
        version = "v2"
    try:
        return FAMILIES[version]
    except KeyError:
        raise UnknownVersionError(f"unknown model version {version!r}; known: {', '.join(VERSIONS)}") from None


def symbol_version(version: str | None) -> str:
    """Model version -> its phoneme table ("v1" or "v2"); the table names themselves map to themselves."""
    return family(version).symbols


def head_digest(path: str | os.PathLike) -> tuple[bytes, str]:
    """A file's first two bytes and the md5 of its first 8192 bytes (what the original's detection reads)."""
    with open(path, "rb") as f:
        first = f.read(8192)
    return first[:2], hashlib.md5(first).hexdigest()


def detect_s2(state_dict_keys_shapes: Mapping[str, tuple], head: bytes = b"PK", digest: str | None = None,
              config_version: str | None = None) -> tuple[str, bool]:
    """The SoVITS version of a checkpoint and whether it is a LoRA fine-tune.

    As the original's loaders: the md5 of known official files first, then the 2-byte head, then the
    state dict (``{key: shape}``), which also settles files re-saved by other tools: ``cfm.*`` -> v3/v4
    (shapes cannot tell them apart: hash, head or the stored ``config.model.version`` decide, else
    "v3"), ``sv_emb.weight`` -> v2Pro* (hash, head or the stored version decide, else 768 decoder
    channels -> v2ProPlus),
    otherwise 322 text-embedding rows -> v1, else v2 (as the original re-derives it).
    """
    version, lora = None, False
    if digest in HASHES:
        version = HASHES[digest]
    elif head != b"PK" and head in HEADS:
        version, lora = HEADS[head]
    shapes = state_dict_keys_shapes
    if version in ("v2Pro", "v2ProPlus", "v3", "v4"):  # the original keeps these as the hash or head says
        return version, lora
    if any(k.startswith("cfm.") for k in shapes):
        return (config_version if config_version in ("v3", "v4") else "v3"), lora
    if "sv_emb.weight" in shapes:
        if config_version in ("v2Pro", "v2ProPlus"):  # a re-saved plain zip: its stored config names it
            return config_version, lora
        pre = shapes.get("dec.conv_pre.weight")
        return ("v2ProPlus" if pre is not None and pre[0] == 768 else "v2Pro"), lora
    emb = shapes.get("enc_p.text_embedding.weight")
    return ("v1" if emb is not None and emb[0] == FAMILIES["v1"].n_symbols else "v2"), lora


def detect_s1(phoneme_vocab: int) -> str:
    """The S1 (GPT) layout from its phoneme-embedding rows: v1 (512) or v2 (732, shared by every later family)."""
    for f in FAMILIES.values():
        if f.s1_phoneme_vocab == phoneme_vocab:
            return f.symbols
    known = sorted({f.s1_phoneme_vocab for f in FAMILIES.values()})
    raise ValueError(f"an S1 phoneme embedding of {phoneme_vocab} rows matches no family (known: {known})")
