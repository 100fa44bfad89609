"""End-to-end synthesis: text -> segments -> phonemes + BERT -> S1 -> S2 -> waveform (32 kHz; v3/v4:
S2's CFM mel + their vocoder, 24 / 48 kHz).

The flow follows the original's inference (docs/synthesis.md, "The flow"): the reference audio
gives the prompt semantic tokens (HuBERT -> ``extract_latent``) and the reference spectrogram(s);
the reference text gives the prompt phonemes and BERT features; each target segment is generated
by S1 after ``[prompt phonemes; segment phonemes]`` and decoded by S2 with the segment's own
phonemes. Segments are generated and decoded in padded batches (both models carry masks, so a
batched row equals its solo result), and each fragment is followed by the original's pause.

    tts = gsv_jax.TTS.from_folder("models/v2")
    wav, sr = tts.synthesize("你好，世界。", "zh", "ref.wav", "参考音频的文字。", "zh")
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from gsv_jax import audio as audio_lib
from gsv_jax import families
from gsv_jax.inference import buckets
from gsv_jax.text import segmentation

log = logging.getLogger(__name__)

HUBERT_SR = families.SSL_SAMPLE_RATE
REF_MIN_SAMPLES_16K = 48000   # 3 s
REF_MAX_SAMPLES_16K = 160000  # 10 s
REF_RANGE_MESSAGE = ("参考音频在3~10秒范围外，请更换！ (the reference audio is outside the 3-10 s range; "
                     "choose a clip between 3 and 10 seconds)")
MIN_PHONES = 6
S1_MAX_STEPS = 1500  # the original's hard cap on decode steps per segment
EARLY_STOP_HZ = 50  # early_stop_num = hz * max_sec with the original's hz = 50 (sic: tokens are 25 Hz)
DEFAULT_MAX_SEC = 54  # the pretrained GPT configs' data.max_sec

# The model folder layout read by TTS.from_folder (first match wins; see docs/synthesis.md, "The model folder").
S1_NAMES = ("s1.ckpt", "gpt.ckpt", "s1", "s1v3.ckpt")
S2_NAMES = ("s2.pth", "sovits.pth", "s2")
BERT_NAMES = ("chinese-roberta-wwm-ext-large", "bert")
HUBERT_NAMES = ("chinese-hubert-base", "hubert")
# v2Pro / v2ProPlus: the speaker-verification model, in the original's layout (pretrained_models/sv/)
SV_FILE = "pretrained_eres2netv2w24s4ep4.ckpt"
SV_NAMES = (f"sv/{SV_FILE}", "sv.ckpt")
# v3 / v4 in the original's pretrained_models names (docs/v3v4.md, "Model folder"): the official SoVITS
# files (used when no s2.pth is there; also the base of a LoRA s2.pth) and the vocoders
CFM_BASE_NAMES = {"v3": ("s2Gv3.pth",), "v4": ("s2Gv4.pth", "gsv-v4-pretrained/s2Gv4.pth")}
VOCODER_NAMES = {"v3": ("models--nvidia--bigvgan_v2_24khz_100band_256x", "bigvgan"),
                 "v4": ("vocoder.pth", "gsv-v4-pretrained/vocoder.pth")}
NO_PROMPT_TEXT = ("prompt_text cannot be empty when using SoVITS v3/v4 (the original's NO_PROMPT_ERROR): "
                  "give the reference text (ref_text, infer.py --ref-text)")


class MissingModelFiles(FileNotFoundError):
    """A model folder lacks some of the four parts; the message says what goes where."""


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "gsv_jax" / "jax_compilation_cache"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache and our compiled-program store in its
    ``programs/`` subfolder (so a second process neither compiles nor traces the models)."""
    import jax

    from gsv_jax.inference import programs

    path = pathlib.Path(path) if path else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the many small programs add up
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    programs.enable(path / "programs")
    return path


@dataclasses.dataclass
class PhoneSequence:
    """Phoneme ids with their BERT features ``[1024, n]`` and the normalised text."""

    ids: np.ndarray
    bert: np.ndarray
    norm_text: str

    def __add__(self, other: PhoneSequence) -> PhoneSequence:
        return PhoneSequence(np.concatenate([self.ids, other.ids]), np.concatenate([self.bert, other.bert], 1),
                             self.norm_text + other.norm_text)


@dataclasses.dataclass
class Reference:
    """What one reference clip gives: prompt semantic tokens and the 32 kHz spectrogram."""

    prompt_codes: np.ndarray  # [P] int
    spec: np.ndarray  # [1, 1025, frames]
    sv_emb: np.ndarray | None = None  # v2Pro*: the speaker embedding [1, 20480] of the clip
    mel: np.ndarray | None = None  # v3/v4: the CFM prompt mel [1, 100, frames] (normalised, untrimmed)


def _find(folder: pathlib.Path, names: Sequence[str], pattern: str | None,
          exclude: Sequence[str] = ()) -> pathlib.Path | None:
    for name in names:
        if (folder / name).exists():
            return folder / name
    if pattern:
        found = [p for p in sorted(folder.glob(pattern)) if p.name not in exclude]
        if len(found) == 1:
            return found[0]
    return None


def _find_sovits(folder: pathlib.Path) -> pathlib.Path | None:
    """``s2.pth``-style names first; else the original's v3/v4 file names (exactly one of them may be
    there: with both, the choice is the user's); else the folder's only ``*.pth`` (vocoders aside)."""
    hit = _find(folder, S2_NAMES, None)
    if hit is not None:
        return hit
    official = [folder / n for v in ("v3", "v4") for n in CFM_BASE_NAMES[v] if (folder / n).is_file()]
    if len(official) > 1:
        raise MissingModelFiles(
            f"model folder {folder} holds several SoVITS models ({', '.join(p.name for p in official)}): name the "
            f"one to use {folder / S2_NAMES[0]} (or give it: infer.py --sovits, TTS.from_paths(sovits=...))")
    if official:
        return official[0]
    return _find(folder, (), "*.pth", exclude=[pathlib.PurePath(n).name for v in VOCODER_NAMES.values() for n in v])


def resolve_model_folder(folder: str | os.PathLike, **given) -> dict:
    """Find the four parts in a model folder; raise :class:`MissingModelFiles` naming what is missing.
    ``given`` (``gpt=``, ``sovits=``, ...): parts named explicitly, not searched for."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise MissingModelFiles(f"model folder {folder} does not exist. {_LAYOUT_HELP}")
    given = {k: v for k, v in given.items() if v is not None}
    search = {"gpt": lambda: _find(folder, S1_NAMES, "*.ckpt"), "sovits": lambda: _find_sovits(folder),
              "bert": lambda: _find(folder, BERT_NAMES, None), "hubert": lambda: _find(folder, HUBERT_NAMES, None)}
    parts = {k: given[k] if k in given else find() for k, find in search.items()}
    missing = [k for k, v in parts.items() if v is None]
    # needed by some versions only (checked once S2 is loaded): v2Pro*'s SV model, v3/v4's vocoder
    parts["sv"] = given.get("sv") or _find(folder, SV_NAMES, "sv/*.ckpt")
    for k in ("vocoder", "sovits_base"):
        if k in given:
            parts[k] = given[k]
    parts.setdefault("model_dir", folder)  # where from_paths looks for the v3/v4 parts
    if missing:
        what = {"gpt": f"the S1 (GPT) weights as {folder / S1_NAMES[0]}",
                "sovits": f"the S2 (SoVITS) weights as {folder / S2_NAMES[0]}",
                "bert": f"the chinese-roberta-wwm-ext-large folder as {folder / BERT_NAMES[0]}/",
                "hubert": f"the chinese-hubert-base folder as {folder / HUBERT_NAMES[0]}/"}
        lines = "\n".join(f"  - missing {what[k]}" for k in missing)
        raise MissingModelFiles(f"model folder {folder} is incomplete:\n{lines}\n{_LAYOUT_HELP}")
    return parts


_LAYOUT_HELP = """Expected layout (original PyTorch files work as they are; no conversion is needed):
  <folder>/s1.ckpt                          GPT weights (e.g. s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt, renamed)
  <folder>/s2.pth                           SoVITS weights (e.g. s2G2333k.pth, renamed)
  <folder>/chinese-roberta-wwm-ext-large/   Hugging Face folder: config.json, pytorch_model.bin or model.safetensors, tokenizer files
  <folder>/chinese-hubert-base/             Hugging Face folder: config.json, pytorch_model.bin or model.safetensors
  <folder>/sv/pretrained_eres2netv2w24s4ep4.ckpt   v2Pro/v2ProPlus only: the speaker-verification model
  v3: s2Gv3.pth (or s2.pth) + models--nvidia--bigvgan_v2_24khz_100band_256x/ (config.json, bigvgan_generator.pt)
  v4: s2Gv4.pth (or s2.pth) + vocoder.pth (both also as gsv-v4-pretrained/...); a LoRA s2.pth next to its base
A folder holding exactly one *.ckpt and one *.pth is also accepted. Run `python infer.py --selftest` to
check the installation with tiny random weights."""


def peek_decoder(sovits) -> str | None:
    """The decoder kind of a SoVITS file ("cfm" for v3/v4, "hifigan") from a cheap look: the official
    files' hash, the 2-byte head, else a plain zip's pickle naming ``cfm.`` weights; None when only
    loading it can tell. (For checks before the slow loads; :func:`gsv_jax.load_s2` decides.)"""
    import zipfile

    path = pathlib.Path(sovits)
    if not path.is_file():
        return None
    head, digest = families.head_digest(path)
    version = families.HASHES.get(digest) or (families.HEADS.get(head, (None,))[0] if head != b"PK" else None)
    if version is not None:
        return families.family(version).decoder
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            return "cfm" if pkl and b"cfm.estimator." in zf.read(pkl) else None
    except (zipfile.BadZipFile, OSError):
        return None


def _find_first(places: Sequence[pathlib.Path], names: Sequence[str]) -> pathlib.Path | None:
    for folder in places:
        for name in names:
            if (folder / name).exists():
                return folder / name
    return None


def _find_vocoder(places: Sequence[pathlib.Path], version: str, sovits) -> pathlib.Path:
    """The vocoder of a v3/v4 model under its original names; a clear error when only the other
    version's vocoder is there, or none."""
    hit = _find_first(places, VOCODER_NAMES[version])
    if hit is not None:
        return hit
    want = VOCODER_NAMES[version][0] + ("/" if version == "v3" else "")
    what = {"v3": f"the BigVGAN vocoder folder {want} (config.json + bigvgan_generator.pt)",
            "v4": f"the v4 vocoder {want} (gsv-v4-pretrained/vocoder.pth)"}[version]
    other = "v4" if version == "v3" else "v3"
    found_other = _find_first(places, VOCODER_NAMES[other])
    if found_other is not None:
        raise ValueError(f"mismatched models: the SoVITS model {sovits} is {version}, which needs {what}, but the "
                         f"model folder holds the {other} vocoder {found_other}; use the vocoder of the same version")
    raise MissingModelFiles(f"the SoVITS model {sovits} is {version}, which needs {what}: put it in the model folder "
                            f"as {places[0] / want} (or give its path: infer.py --vocoder, TTS.from_paths(vocoder=...))")


def _check_vocoder(version: str, vocoder, sovits=None) -> None:
    name = VOCODER_NAMES[version][0]
    if vocoder is None:
        raise ValueError(f"a SoVITS {version} model needs its vocoder: TTS(..., vocoder=gsv_jax.load_vocoder('{name}'))")
    if getattr(vocoder, "version", None) != version:
        model = f"the SoVITS model {sovits}" if sovits else "the SoVITS model"
        source = f" {vocoder.source}" if getattr(vocoder, "source", "") else ""
        raise ValueError(f"mismatched models: {model} is {version} but the vocoder{source} is the {vocoder.version} "
                         f"one ({vocoder.sampling_rate} Hz); {version} needs {name}")


class LRUCache:
    """A bounded mapping that forgets the least recently used entry first; every access holds a lock,
    so several threads (the server's request handlers) may share one :class:`TTS`."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """S1 sampling settings (the original's defaults); rows with equal settings share a batch."""

    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35


@dataclasses.dataclass
class Prepared:
    """One request after the text and reference side: what S1 and S2 need for every segment."""

    segments: list            # the target text pieces
    targets: list             # PhoneSequence per segment
    prompt: PhoneSequence | None  # the reference text's phonemes (None: reference-free)
    ref: Reference
    specs: list               # reference spectrogram(s): the main one, then the auxiliary ones
    timings: dict
    cfm_prompt: tuple | None = None  # v3/v4: S2V3.prompt(...) of the reference (ge, features, mel)

    def s1_rows(self, seed: int) -> list[S1Row]:
        """Segment i samples with ``seed + i``: a segment's tokens do not depend on the batch it is in."""
        prompt_codes = None if self.prompt is None else self.ref.prompt_codes
        return [S1Row(self.prompt + t if self.prompt is not None else t, prompt_codes, seed + i)
                for i, t in enumerate(self.targets)]


@dataclasses.dataclass
class S1Row:
    phones: PhoneSequence      # [prompt phonemes; segment phonemes] with their BERT features
    prompt_codes: np.ndarray | None  # the reference's semantic tokens (None: reference-free)
    seed: int


@dataclasses.dataclass
class S2Row:
    codes: np.ndarray          # semantic tokens of one segment
    phones: np.ndarray         # the segment's own phoneme ids
    specs: list                # its reference spectrogram(s) (rows with the same list share a call)
    seed: int
    prompt: tuple | None = None  # v3/v4: the request's Prepared.cfm_prompt (the CFM prompt)


class TTS:
    """The whole synthesis pipeline over loaded models (S1, S2, BERT, HuBERT).

    Thread safety: the phones/BERT and reference caches are bounded LRU maps behind a lock, and a call
    keeps its state (timings included) in locals, so several threads may call :meth:`synthesize` at
    once. The jitted models themselves are safe to call concurrently (JAX dispatch is thread-safe);
    the server still sends all model work through one engine thread so that concurrent requests are
    batched (docs/server.md).
    """

    TEXT_CACHE_SIZE = 2048   # phones/BERT per (text, language): ~1024 x n floats each
    REF_CACHE_SIZE = 64      # reference clips (prompt tokens + spectrogram)

    def __init__(self, s1, s2, bert, hubert, *, compilation_cache: bool | str = True, sv=None, vocoder=None):
        self.s1, self.s2, self.bert, self.hubert = s1, s2, bert, hubert
        self.sv = sv  # v2Pro*: gsv_jax.load_sv(...) (ERes2NetV2), turns each reference into its embedding
        self.vocoder = vocoder  # v3/v4: gsv_jax.load_vocoder(...) (BigVGAN / the 48 kHz vocoder), mel -> audio
        # spectrogram id -> (spectrogram, embedding): the rows of decode_tokens carry the reference cache's
        # spectrograms; this finds their embeddings (the stored array keeps its id from being reused)
        self._sv_by_spec = LRUCache(4 * self.REF_CACHE_SIZE)
        self.version = s2.version  # the text frontend follows the SoVITS model
        self._check_versions()
        if compilation_cache:
            enable_compilation_cache(None if compilation_cache is True else compilation_cache)
        self._ref_cache = LRUCache(self.REF_CACHE_SIZE)
        self._text_cache = LRUCache(self.TEXT_CACHE_SIZE)

    def clear_caches(self) -> None:
        """Forget the per-text phones/BERT features and the per-file reference data."""
        self._ref_cache.clear()
        self._text_cache.clear()
        self._sv_by_spec.clear()

    def replace_models(self, *, s1=None, s2=None, vocoder=None) -> None:
        """Swap in new S1 and/or S2 weights (checked against the other model first; on a mismatch
        nothing changes; a v3/v4 S2 needs its ``vocoder`` unless the current one fits). The caches are
        cleared: prompt tokens and phonemes follow the S2 version. The caller makes sure no synthesis
        runs meanwhile (the server's weights switch does)."""
        old = (self.s1, self.s2, self.version, self.vocoder)
        self.s1, self.s2, self.vocoder = s1 or self.s1, s2 or self.s2, vocoder or self.vocoder
        self.version = self.s2.version
        try:
            self._check_versions()
        except ValueError:
            self.s1, self.s2, self.version, self.vocoder = old
            raise
        self.clear_caches()

    # ---------------------------------------------------------------------------------- loading
    @classmethod
    def from_paths(cls, gpt, sovits, bert, hubert, sv=None, vocoder=None, sovits_base=None, model_dir=None,
                   **kwargs) -> TTS:
        """``sv``: the speaker-verification checkpoint (v2Pro/v2ProPlus SoVITS models need it).
        v3/v4: ``vocoder`` (the BigVGAN folder / ``vocoder.pth``) and, for a LoRA fine-tune,
        ``sovits_base`` (its full model); when not given they are looked for under their original
        names in ``model_dir`` and beside the SoVITS file (docs/v3v4.md, "Model folder")."""
        import gsv_jax

        for name, p in (("gpt", gpt), ("sovits", sovits), ("bert", bert), ("hubert", hubert), ("sv", sv),
                        ("vocoder", vocoder), ("sovits_base", sovits_base)):
            if p is not None and not pathlib.Path(p).exists():
                raise MissingModelFiles(f"{name} path {p} does not exist. {_LAYOUT_HELP}")
        cache = kwargs.get("compilation_cache", True)
        if cache:  # before loading: the loaders use the stored parameter shapes too
            enable_compilation_cache(None if cache is True else cache)
        places = [pathlib.Path(p) for p in (model_dir, pathlib.Path(sovits).parent) if p is not None]
        head, _ = families.head_digest(sovits) if pathlib.Path(sovits).is_file() else (b"", "")
        lora = families.HEADS.get(head, ("", False))
        if lora[1] and sovits_base is None:  # a LoRA fine-tune: its base model, by its original name
            sovits_base = _find_first(places, CFM_BASE_NAMES.get(lora[0], ()))
            if sovits_base is None:
                base = CFM_BASE_NAMES.get(lora[0], ("its base model",))[0]
                raise MissingModelFiles(
                    f"the SoVITS model {sovits} is a {lora[0]} LoRA fine-tune, which needs its base model {base} "
                    f"(GPT-SoVITS/pretrained_models/{base}): put it in the model folder as {places[0] / base} (or "
                    f"give its path: infer.py --sovits-base, TTS.from_paths(sovits_base=...))")
        s2 = gsv_jax.load_s2(sovits, base=sovits_base) if sovits_base is not None else gsv_jax.load_s2(sovits)
        fam = families.family(s2.version)
        if fam.speaker_verification and sv is None:  # before the slow loads
            raise MissingModelFiles(
                f"the SoVITS model {sovits} is {s2.version}, which needs the speaker-verification model {SV_FILE} "
                f"(GPT-SoVITS/pretrained_models/sv/{SV_FILE}): put it in the model folder as "
                f"{pathlib.Path(sovits).parent / 'sv' / SV_FILE} (or give its path: infer.py --sv, TTS.from_paths(sv=...))")
        voc = None
        if fam.decoder == "cfm":  # before the slow loads: the vocoder of this version
            voc = gsv_jax.load_vocoder(vocoder if vocoder is not None else _find_vocoder(places, s2.version, sovits))
            _check_vocoder(s2.version, voc, sovits)
        sv_model = gsv_jax.load_sv(sv) if sv is not None else None  # kept for a later switch to Pro weights
        return cls(gsv_jax.load_s1(gpt), s2, gsv_jax.load_bert(bert), gsv_jax.load_hubert(hubert), sv=sv_model,
                   vocoder=voc, **kwargs)

    @classmethod
    def from_folder(cls, folder, **kwargs) -> TTS:
        return cls.from_paths(**resolve_model_folder(folder), **kwargs)

    def _check_versions(self):
        if not self.family.supported:
            raise ValueError(f"SoVITS {self.version} models do not run through TTS yet (docs/families.md)")
        if self.family.decoder == "cfm":
            _check_vocoder(self.version, self.vocoder)
        n_symbols = self.family.n_symbols
        s1_vocab = int(self.s1.config.model.phoneme_vocab_size)
        if s1_vocab < n_symbols:
            raise ValueError(
                f"mismatched models: the SoVITS model is {self.version} (phoneme table of {n_symbols}) but the "
                f"GPT model only knows {s1_vocab} phonemes (a v1 GPT). Use the GPT weights of the same version.")
        if self.family.symbols == "v1" and s1_vocab != self.family.s1_phoneme_vocab:
            log.warning("a v1 SoVITS model with a v2 GPT model: phonemes follow the v1 table, as the original does")
        if self.s2.speaker_verification:
            if self.sv is None:
                raise ValueError(f"a {self.version} SoVITS model needs the speaker-verification model: TTS(..., "
                                 f"sv=gsv_jax.load_sv('<models>/sv/{SV_FILE}'))")
            if self.sv.dim != self.s2.config.sv_dim:
                raise ValueError(f"mismatched models: the speaker-verification model gives {self.sv.dim}-d embeddings "
                                 f"but the SoVITS model's sv_emb takes {self.s2.config.sv_dim} (use {SV_FILE})")

    @property
    def family(self) -> families.Family:
        return families.family(self.version)

    @property
    def sample_rate(self) -> int:
        return self.family.sample_rate

    @property
    def languages(self) -> tuple:
        return self.family.ui_languages

    @property
    def max_sec(self) -> float:
        """The S1 checkpoint's ``config["data"]["max_sec"]`` (the original's default 54 when absent)."""
        data = self.s1.config.get("data") or {}
        return float(data.get("max_sec", DEFAULT_MAX_SEC) or DEFAULT_MAX_SEC)

    @property
    def max_new_tokens(self) -> int:
        """New tokens per segment at most, as the original bounds them: ``early_stop_num = 50 * max_sec``
        (stop once more than that many were generated) and never more than 1500 decode steps."""
        return int(min(S1_MAX_STEPS, EARLY_STOP_HZ * self.max_sec + 1))

    def token_budget(self, requested: int | None) -> int:
        """``requested`` (None: the model's bound) clamped to :attr:`max_new_tokens`."""
        if requested is None:
            return self.max_new_tokens
        if int(requested) < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (25 tokens = 1 s of speech), got {requested}")
        return min(int(requested), self.max_new_tokens)

    # ------------------------------------------------------------------------------- text side
    def phones_and_bert(self, text: str, language: str, *, final: bool = False,
                        timings: dict | None = None) -> PhoneSequence:
        """The original's ``get_phones_and_bert``: language segmentation, G2P, BERT for Mandarin.
        ``timings["bert"]`` (if given) accumulates the seconds spent in BERT."""
        from gsv_jax import text as text_lib

        key = (text, language, final)
        hit = self._text_cache.get(key)
        if hit is not None:
            return hit
        if language not in self.languages:
            raise ValueError(f"unknown language {language!r} for a {self.version} model; use one of "
                             f"{', '.join(self.languages)}")
        parts = []
        for seg_text, seg_lang in text_lib.split_languages(text, mode=language):
            lang = seg_lang.replace("all_", "")
            phones, word2ph, norm_text = text_lib.clean_text(seg_text, lang, version=self.version)
            ids = np.asarray(text_lib.cleaned_text_to_sequence(phones, version=self.version), np.int32)
            t0 = time.perf_counter()
            bert = self.bert.features_for(lang, norm_text, word2ph, len(ids))
            if timings is not None:
                timings["bert"] = timings.get("bert", 0.0) + time.perf_counter() - t0
            parts.append(PhoneSequence(ids, np.asarray(bert, np.float32), norm_text))
        if not parts:
            raise ValueError(f"no speakable text in {text!r}")
        seq = parts[0]
        for p in parts[1:]:
            seq = seq + p
        if not final and len(seq.ids) < MIN_PHONES:
            seq = self.phones_and_bert("." + text, language, final=True, timings=timings)
        self._text_cache.put(key, seq)
        return seq

    # -------------------------------------------------------------------------- reference side
    def reference(self, path, *, need_prompt: bool = True) -> Reference:
        """Prompt semantic tokens (HuBERT + ``extract_latent``) and the spectrogram of one clip
        (cached by resolved path, modification time and size: a replaced file is read again)."""
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reference audio {path} not found")
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, need_prompt)
        hit = self._ref_cache.get(key)
        if hit is not None:
            if hit.sv_emb is not None:  # keep its embedding findable as long as the reference is in use
                self._sv_by_spec.put(id(hit.spec), (hit.spec, hit.sv_emb))
            return hit
        prompt = np.zeros((0,), np.int32)
        if need_prompt:
            wav16 = audio_lib.load_audio(path, sr=HUBERT_SR)
            if not REF_MIN_SAMPLES_16K <= len(wav16) <= REF_MAX_SAMPLES_16K:
                raise ValueError(f"{REF_RANGE_MESSAGE}: {path} is {len(wav16) / HUBERT_SR:.2f} s")
            wav16 = audio_lib.pad_reference(wav16)
            ssl = self.hubert(wav16[None])
            prompt = np.asarray(self.s2.extract_latent(ssl))[0].astype(np.int32)
        if self.s2.speaker_verification:
            spec, sv_emb = self.reference_spec_and_embedding(path)
            self._sv_by_spec.put(id(spec), (spec, sv_emb))
        else:
            spec, sv_emb = self.reference_spec(path), None
        mel = self.reference_mel(path) if need_prompt and self.family.decoder == "cfm" else None
        ref = Reference(prompt, spec, sv_emb, mel)
        self._ref_cache.put(key, ref)
        return ref

    def reference_spec_and_embedding(self, path) -> tuple[np.ndarray, np.ndarray]:
        """v2Pro*: the spectrogram and the speaker embedding ``[1, dim]`` of one clip, as ``TTS._get_ref_spec``
        + ``SV.compute_embedding3``: the 32 kHz audio after the peak rule, resampled to 16 kHz (torchaudio's
        sinc resampler), Kaldi fbank, ERes2NetV2 ``forward3``."""
        wav = audio_lib.load_reference(path, sr=families.SOVITS_SAMPLE_RATE)
        if wav.shape[-1] < 2048:
            raise ValueError(f"reference audio {path} is too short for a spectrogram (needs >= 2048 samples at 32 kHz)")
        wav16 = audio_lib.resample_sinc(wav[0], families.SOVITS_SAMPLE_RATE, families.SSL_SAMPLE_RATE)
        return np.asarray(audio_lib.spectrogram(wav)), np.asarray(self.sv.embed(wav16), np.float32)[None]

    def speaker_embeddings(self, specs) -> list | None:
        """The embeddings of reference spectrograms made by :meth:`reference` (None for non-Pro models)."""
        if not self.s2.speaker_verification:
            return None
        out = []
        for s in specs:
            hit = self._sv_by_spec.get(id(s))
            if hit is None or hit[0] is not s:
                raise ValueError("a v2Pro/v2ProPlus reference spectrogram without its speaker embedding: take the "
                                 "references from TTS.reference(path) (which computes both)")
            out.append(hit[1])
        return out

    def reference_mel(self, path) -> np.ndarray:
        """v3/v4: the CFM prompt mel as ``TTS.py``'s ``using_vocoder_synthesis`` makes it from the raw
        clip (``torchaudio.load``: the file's rate; channels averaged; torchaudio-style resampling to
        24 kHz (v3) / 32 kHz (v4); no peak rule; ``mel_fn``/``mel_fn_v4``; ``norm_spec``): ``[1, 100, frames]``."""
        import soundfile as sf

        from gsv_jax.inference import v3

        wav = audio_lib.load_audio(path, sr=None, mono=True)
        return v3.reference_mel(wav, sf.info(str(path)).samplerate, self.version)

    @staticmethod
    def reference_spec(path) -> np.ndarray:
        """The original's ``get_spepc``: 32 kHz mono (torchaudio-style resampling), peak above 1
        divided by min(2, peak), linear spectrogram ``[1, 1025, frames]``."""
        wav = audio_lib.load_reference(path, sr=families.SOVITS_SAMPLE_RATE)
        if wav.shape[-1] < 2048:
            raise ValueError(f"reference audio {path} is too short for a spectrogram (needs >= 2048 samples at 32 kHz)")
        return np.asarray(audio_lib.spectrogram(wav))

    # ------------------------------------------------------------------------------ the stages
    def prepare(self, text: str, text_lang: str, ref_wav_path=None, ref_text: str = "", ref_lang: str = "zh", *,
                cut: str = "cut1", aux_refs: Sequence = ()) -> Prepared:
        """Text and reference side of one request: segments, phonemes + BERT, prompt tokens, spectrograms."""
        timings = {"frontend": 0.0, "bert": 0.0, "hubert": 0.0, "s1": 0.0, "s2": 0.0}
        if ref_wav_path is None:
            raise ValueError("a reference audio file is needed (ref_wav_path)")
        if text_lang not in self.languages:
            raise ValueError(f"unknown target language {text_lang!r}; use one of {', '.join(self.languages)}")
        ref_text = (ref_text or "").strip("\n")
        ref_free = not ref_text.strip()
        cfm = self.family.decoder == "cfm"
        if ref_free and cfm:
            raise ValueError(NO_PROMPT_TEXT)
        if not ref_free and ref_lang not in self.languages:
            raise ValueError(f"unknown reference language {ref_lang!r}; use one of {', '.join(self.languages)}")
        if cfm and aux_refs:  # as the original: v3/v4 decode with the main reference only
            log.warning("SoVITS %s uses the main reference only; %d auxiliary reference(s) ignored",
                        self.version, len(aux_refs))
            aux_refs = ()

        t0 = time.perf_counter()
        segments = segmentation.prepare_segments(text, text_lang, cut)
        timings["frontend"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = self.reference(ref_wav_path, need_prompt=not ref_free)
        specs = [ref.spec] + [self.reference(p, need_prompt=False).spec for p in aux_refs]
        timings["hubert"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        prompt_seq = None
        if not ref_free:
            if ref_text[-1] not in segmentation.SPLIT_MARKS:
                ref_text += segmentation.closing_mark(ref_lang)
            prompt_seq = self.phones_and_bert(ref_text, ref_lang, timings=timings)
        targets = [self.phones_and_bert(seg, text_lang, timings=timings) for seg in segments]
        timings["frontend"] += time.perf_counter() - t0 - timings["bert"]
        cfm_prompt = None
        if cfm:  # the prompt features of the reference: once per request, shared by every segment
            t0 = time.perf_counter()
            cfm_prompt = self.s2.prompt(ref.prompt_codes, prompt_seq.ids, ref.spec, ref.mel)
            timings["s2"] += time.perf_counter() - t0
        return Prepared(list(segments), targets, prompt_seq, ref, specs, timings, cfm_prompt)

    def generate_tokens(self, rows: Sequence[S1Row], sampling: Sampling = Sampling(), *,
                        max_new_tokens: int | None = None, on_chunk=None) -> tuple[list[np.ndarray], np.ndarray]:
        """S1 for rows of any requests as ONE padded batch (per-row prompts, lengths and seeds; rows end
        independently). Returns the new tokens per row and whether each ended on EOS. ``on_chunk``:
        the streaming hook of :meth:`S1Decoder.generate` (it sees the padded batch; the first
        ``len(rows)`` rows are the real ones). The batch is padded with copies of the first row to
        :func:`buckets.batch` rows, so any number of rows reuses a few compiled programs."""
        n_real = len(rows)
        rows = list(rows) + [rows[0]] * (buckets.batch(n_real) - n_real)
        seqs = [r.phones for r in rows]
        x = _pad([s.ids for s in seqs])
        x_lens = np.array([len(s.ids) for s in seqs], np.int32)
        bert = np.zeros((len(seqs), seqs[0].bert.shape[0], x.shape[1]), np.float32)
        for i, s in enumerate(seqs):
            bert[i, :, : s.bert.shape[1]] = s.bert
        prompts = prompt_lens = None
        if any(r.prompt_codes is not None and len(r.prompt_codes) for r in rows):
            codes = [np.zeros((0,), np.int32) if r.prompt_codes is None else np.asarray(r.prompt_codes, np.int32)
                     for r in rows]
            prompt_lens = np.array([len(c) for c in codes], np.int32)
            prompts = np.zeros((len(rows), max(1, int(prompt_lens.max()))), np.int32)
            for i, c in enumerate(codes):
                prompts[i, : len(c)] = c
        out, info = self.s1.generate(x, bert, prompts, top_k=sampling.top_k, top_p=sampling.top_p,
                                     temperature=sampling.temperature,
                                     repetition_penalty=sampling.repetition_penalty,
                                     max_new_tokens=self.token_budget(max_new_tokens),
                                     seed=np.array([r.seed for r in rows], np.int64) % (1 << 32),
                                     x_lens=x_lens, prompt_lens=prompt_lens, return_info=True, on_chunk=on_chunk)
        tokens = []
        for r in out[:n_real]:
            r = np.asarray(r, np.int32)
            tokens.append(r if len(r) else np.zeros((1,), np.int32))  # the original's "bad zero prediction"
        return tokens, np.asarray(info["eos_stop"], bool)[:n_real]

    def decode_tokens(self, rows: Sequence[S2Row], *, speed: float = 1.0, noise_scale: float = 0.5,
                      sample_steps: int | None = None) -> list:
        """S2 for rows of any requests: rows that share a reference list run as one padded batch. Each
        row's noise is drawn from its own seed (``[frames, inter]`` from ``default_rng(seed)``), so a row
        decodes the same alone or in any batch (padded with copies to :func:`buckets.batch` rows).
        v3/v4 (rows carry their ``prompt``): every row in one batch per chunk step, each chunked as the
        original's ``using_vocoder_synthesis``, ``sample_steps`` Euler steps (``noise_scale`` unused)."""
        if self.family.decoder == "cfm":
            if any(r.prompt is None for r in rows):
                raise ValueError(f"SoVITS {self.version} rows need their CFM prompt: S2Row(..., prompt="
                                 "prepared.cfm_prompt) with prepared = TTS.prepare(...)")
            return self.s2.synthesize_rows([(r.codes, r.phones, r.prompt) for r in rows], vocoder=self.vocoder,
                                           sample_steps=self.steps(sample_steps), speed=speed,
                                           seeds=[r.seed for r in rows])
        wavs: list = [None] * len(rows)
        groups: dict = {}
        for i, r in enumerate(rows):  # the spectrograms are the reference cache's arrays: same clip, same ids
            groups.setdefault(tuple(id(s) for s in r.specs), []).append(i)
        inter = self.s2.config.inter_channels
        for idx in groups.values():
            group = [rows[i] for i in idx]
            group += [group[0]] * (buckets.batch(len(group)) - len(group))  # a few batch shapes only
            c_lens = [len(r.codes) for r in group]
            noise = None
            if noise_scale != 0:
                out_lens = [2 * n if speed == 1.0 else int(2 * n / speed) + 1 for n in c_lens]
                noise = np.zeros((len(group), inter, max(out_lens)), np.float32)
                for b, (r, n) in enumerate(zip(group, out_lens)):
                    draw = np.random.default_rng(r.seed % (1 << 32)).standard_normal((n, inter), dtype=np.float32)
                    noise[b, :, :n] = draw.T
            specs = group[0].specs
            sv = self.speaker_embeddings(specs)  # v2Pro*: one per reference, aligned with specs
            out = self.s2.decode(_pad([r.codes for r in group]), _pad([r.phones for r in group]),
                                 specs if len(specs) > 1 else specs[0], noise_scale=noise_scale, speed=speed,
                                 noise=noise, codes_lens=c_lens, phones_lens=[len(r.phones) for r in group],
                                 sv_emb=None if sv is None else (sv if len(specs) > 1 else sv[0]))
            for i, w in zip(idx, out):
                wavs[i] = np.asarray(w, np.float32)
        return wavs

    def decode_joined(self, job: Prepared, rows: Sequence[S2Row], *, speed: float = 1.0,
                      sample_steps: int | None = None) -> list:
        """v3/v4: the original's ``using_vocoder_synthesis_batched_infer`` over ``rows`` (one request's):
        their features joined, cut into overlapping chunks sampled as one CFM batch, SOLA, split per
        segment. The noise comes from the first row's seed."""
        return self.s2.synthesize_batched([r.codes for r in rows], [r.phones for r in rows], job.ref.prompt_codes,
                                          job.prompt.ids, job.ref.spec, job.ref.mel, vocoder=self.vocoder,
                                          sample_steps=self.steps(sample_steps), speed=speed, seed=rows[0].seed)

    def steps(self, sample_steps: int | None) -> int | None:
        """The CFM step count: ``sample_steps`` (checked) or the version's default (32 v3, 8 v4); None
        for the VITS versions, which have no steps."""
        if sample_steps is None:
            return self.family.sample_steps
        if isinstance(sample_steps, bool) or int(sample_steps) != sample_steps or sample_steps < 1:
            raise ValueError(f"sample_steps must be an integer >= 1 (the original offers 4-128; default "
                             f"{self.family.sample_steps or 'v3 32, v4 8'}), got {sample_steps!r}")
        return int(sample_steps)

    def join(self, wavs: Sequence[np.ndarray], pause: float = 0.3) -> np.ndarray:
        """Each fragment divided by its peak when above 1, followed by ``pause`` seconds of silence."""
        gap = np.zeros(int(self.sample_rate * pause), np.float32)
        pieces = []
        for w in wavs:
            pieces += [normalize_peak(w), gap]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    # ------------------------------------------------------------------------------ synthesis
    def synthesize(self, text: str, text_lang: str, ref_wav_path=None, ref_text: str = "", ref_lang: str = "zh",
                   *, top_k: int = 15, top_p: float = 1.0, temperature: float = 1.0,
                   repetition_penalty: float = 1.35, speed: float = 1.0, cut: str = "cut1",
                   noise_scale: float = 0.5, seed: int = 0, aux_refs: Sequence = (), batch_size: int = 8,
                   pause: float = 0.3, max_new_tokens: int | None = None, sample_steps: int | None = None,
                   join_segments: bool = False,
                   progress: Callable[[str, int, int], None] | None = None, return_timings: bool = False):
        """Text -> ``(wav float32 [N], sample rate)``, with ``return_timings`` ``(wav, sr, timings)``:
        seconds per stage (frontend, bert, hubert, s1, s2), ``audio_seconds``, ``segments`` and
        ``no_eos_segments`` (1-based segments that hit the token bound). Languages use the original's
        codes ("zh", "en", "ja", "ko", "yue", "auto", "auto_yue", "all_zh", ...). An empty ``ref_text``
        selects the reference-free mode (no prompt tokens), as in the original. Segment i samples with
        ``seed + i``, so the result does not depend on ``batch_size``. ``max_new_tokens`` (default: the
        model's bound, :attr:`max_new_tokens`) is clamped to that bound.

        v3/v4: ``sample_steps`` CFM steps (default 32 v3, 8 v4), the reference text is required, the
        output is at the vocoder's rate (:attr:`sample_rate`: 24 kHz v3, 48 kHz v4); segments of any length
        are chunked as the original. Each segment alone, batched (default), or with ``join_segments``
        the segments of a batch joined and cut into overlapping chunks re-joined with SOLA, as the
        original's ``TTS.run`` with ``parallel_infer`` (then a segment depends on its neighbours)."""
        progress = progress or (lambda stage, done, total: None)
        budget = self.token_budget(max_new_tokens)
        steps = self.steps(sample_steps)
        job = self.prepare(text, text_lang, ref_wav_path, ref_text, ref_lang, cut=cut, aux_refs=aux_refs)
        timings, segments = job.timings, job.segments
        progress("reference", 1, 1)
        progress("text", len(segments), len(segments))
        sampling = Sampling(top_k, top_p, temperature, repetition_penalty)

        t0 = time.perf_counter()
        rows = job.s1_rows(seed)
        tokens: list[np.ndarray] = []
        for start in range(0, len(rows), batch_size):
            out, eos_stop = self.generate_tokens(rows[start:start + batch_size], sampling, max_new_tokens=budget)
            tokens.extend(out)
            for i in np.flatnonzero(~eos_stop):  # capped: usually runaway audio, worth a warning
                timings.setdefault("no_eos_segments", []).append(start + int(i) + 1)
                _warn_no_eos(start + int(i) + 1, len(segments), segments[start + int(i)], budget)
            progress("s1", min(start + batch_size, len(rows)), len(rows))
        timings["s1"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        s2_rows = [S2Row(tok, t.ids, job.specs, seed + i, job.cfm_prompt)
                   for i, (tok, t) in enumerate(zip(tokens, job.targets))]
        wavs: list[np.ndarray] = []
        for start in range(0, len(s2_rows), batch_size):
            batch = s2_rows[start:start + batch_size]
            if join_segments and job.cfm_prompt is not None:
                wavs.extend(self.decode_joined(job, batch, speed=speed, sample_steps=steps))
            else:
                wavs.extend(self.decode_tokens(batch, speed=speed, noise_scale=noise_scale, sample_steps=steps))
            progress("s2", min(start + batch_size, len(s2_rows)), len(s2_rows))
        timings["s2"] += time.perf_counter() - t0

        out = self.join(wavs, pause)
        timings["audio_seconds"] = len(out) / self.sample_rate
        timings["segments"] = len(segments)
        if return_timings:
            return out, self.sample_rate, timings
        return out, self.sample_rate


def normalize_peak(w) -> np.ndarray:
    """The original's per-fragment rule: divided by its peak when that is above 1."""
    w = np.asarray(w, np.float32)
    peak = float(np.abs(w).max()) if w.size else 0.0
    return w / peak if peak > 1 else w


def _warn_no_eos(number: int, total: int, segment: str, max_new_tokens: int) -> None:
    shown = segment if len(segment) <= 40 else segment[:37] + "..."
    log.warning("segment %d of %d (%r) reached max_new_tokens=%d (%.0f s of audio) without an end token; "
                "its audio may run on or be cut. Split the text (--cut) or change the seed or sampling settings.",
                number, total, shown, max_new_tokens, max_new_tokens / 25)


def _pad(rows: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
