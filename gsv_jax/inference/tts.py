"""End-to-end synthesis: text -> segments -> phonemes + BERT -> S1 -> S2 -> 32 kHz waveform.

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

import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from gsv_jax import audio as audio_lib
from gsv_jax.text import segmentation

log = logging.getLogger(__name__)

SAMPLE_RATE = 32000
HUBERT_SR = 16000
REF_MIN_SAMPLES_16K = 48000   # 3 s
REF_MAX_SAMPLES_16K = 160000  # 10 s
REF_RANGE_MESSAGE = ("参考音频在3~10秒范围外，请更换！ (the reference audio is outside the 3-10 s range; "
                     "choose a clip between 3 and 10 seconds)")
MIN_PHONES = 6
LANGUAGES_V1 = ("auto", "en", "zh", "ja", "all_zh", "all_ja")
LANGUAGES_V2 = ("auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko")

# The model folder layout read by TTS.from_folder (first match wins; see docs/synthesis.md, "The model folder").
S1_NAMES = ("s1.ckpt", "gpt.ckpt", "s1")
S2_NAMES = ("s2.pth", "sovits.pth", "s2")
BERT_NAMES = ("chinese-roberta-wwm-ext-large", "bert")
HUBERT_NAMES = ("chinese-hubert-base", "hubert")


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


def _find(folder: pathlib.Path, names: Sequence[str], pattern: str | None) -> pathlib.Path | None:
    for name in names:
        if (folder / name).exists():
            return folder / name
    if pattern:
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
    return None


def resolve_model_folder(folder: str | os.PathLike) -> dict:
    """Find the four parts in a model folder; raise :class:`MissingModelFiles` naming what is missing."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise MissingModelFiles(f"model folder {folder} does not exist. {_LAYOUT_HELP}")
    parts = {
        "gpt": _find(folder, S1_NAMES, "*.ckpt"),
        "sovits": _find(folder, S2_NAMES, "*.pth"),
        "bert": _find(folder, BERT_NAMES, None),
        "hubert": _find(folder, HUBERT_NAMES, None),
    }
    missing = [k for k, v in parts.items() if v is None]
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
A folder holding exactly one *.ckpt and one *.pth is also accepted. Run `python infer.py --selftest` to
check the installation with tiny random weights."""


class TTS:
    """The whole synthesis pipeline over loaded models (S1, S2, BERT, HuBERT)."""

    def __init__(self, s1, s2, bert, hubert, *, compilation_cache: bool | str = True):
        self.s1, self.s2, self.bert, self.hubert = s1, s2, bert, hubert
        self.version = s2.version  # the text frontend follows the SoVITS model
        self._check_versions()
        if compilation_cache:
            enable_compilation_cache(None if compilation_cache is True else compilation_cache)
        self._ref_cache: dict = {}
        self._text_cache: dict = {}
        self._bert_seconds = 0.0
        self.last_timings: dict = {}

    def clear_caches(self) -> None:
        """Forget the per-text phones/BERT features and the per-file reference data."""
        self._ref_cache.clear()
        self._text_cache.clear()

    # ---------------------------------------------------------------------------------- loading
    @classmethod
    def from_paths(cls, gpt, sovits, bert, hubert, **kwargs) -> TTS:
        import gsv_jax

        for name, p in (("gpt", gpt), ("sovits", sovits), ("bert", bert), ("hubert", hubert)):
            if not pathlib.Path(p).exists():
                raise MissingModelFiles(f"{name} path {p} does not exist. {_LAYOUT_HELP}")
        cache = kwargs.get("compilation_cache", True)
        if cache:  # before loading: the loaders use the stored parameter shapes too
            enable_compilation_cache(None if cache is True else cache)
        return cls(gsv_jax.load_s1(gpt), gsv_jax.load_s2(sovits), gsv_jax.load_bert(bert),
                   gsv_jax.load_hubert(hubert), **kwargs)

    @classmethod
    def from_folder(cls, folder, **kwargs) -> TTS:
        return cls.from_paths(**resolve_model_folder(folder), **kwargs)

    def _check_versions(self):
        n_symbols = 322 if self.version == "v1" else 732
        s1_vocab = int(self.s1.config.model.phoneme_vocab_size)
        if s1_vocab < n_symbols:
            raise ValueError(
                f"mismatched models: the SoVITS model is {self.version} (phoneme table of {n_symbols}) but the "
                f"GPT model only knows {s1_vocab} phonemes (a v1 GPT). Use the GPT weights of the same version.")
        if self.version == "v1" and s1_vocab != 512:
            log.warning("a v1 SoVITS model with a v2 GPT model: phonemes follow the v1 table, as the original does")

    @property
    def languages(self) -> tuple:
        return LANGUAGES_V1 if self.version == "v1" else LANGUAGES_V2

    # ------------------------------------------------------------------------------- text side
    def phones_and_bert(self, text: str, language: str, *, final: bool = False) -> PhoneSequence:
        """The original's ``get_phones_and_bert``: language segmentation, G2P, BERT for Mandarin."""
        from gsv_jax import text as text_lib

        key = (text, language, final)
        if key in self._text_cache:
            return self._text_cache[key]
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
            self._bert_seconds += time.perf_counter() - t0
            parts.append(PhoneSequence(ids, np.asarray(bert, np.float32), norm_text))
        if not parts:
            raise ValueError(f"no speakable text in {text!r}")
        seq = parts[0]
        for p in parts[1:]:
            seq = seq + p
        if not final and len(seq.ids) < MIN_PHONES:
            seq = self.phones_and_bert("." + text, language, final=True)
        self._text_cache[key] = seq
        return seq

    # -------------------------------------------------------------------------- reference side
    def reference(self, path, *, need_prompt: bool = True) -> Reference:
        """Prompt semantic tokens (HuBERT + ``extract_latent``) and the spectrogram of one clip."""
        path = pathlib.Path(path)
        key = (str(path.resolve()), need_prompt)
        if key in self._ref_cache:
            return self._ref_cache[key]
        if not path.is_file():
            raise FileNotFoundError(f"reference audio {path} not found")
        prompt = np.zeros((0,), np.int32)
        if need_prompt:
            wav16 = audio_lib.load_audio(path, sr=HUBERT_SR)
            if not REF_MIN_SAMPLES_16K <= len(wav16) <= REF_MAX_SAMPLES_16K:
                raise ValueError(f"{REF_RANGE_MESSAGE}: {path} is {len(wav16) / HUBERT_SR:.2f} s")
            wav16 = audio_lib.pad_reference(wav16)
            ssl = self.hubert(wav16[None])
            prompt = np.asarray(self.s2.extract_latent(ssl))[0].astype(np.int32)
        self._ref_cache[key] = Reference(prompt, self.reference_spec(path))
        return self._ref_cache[key]

    @staticmethod
    def reference_spec(path) -> np.ndarray:
        """The original's ``get_spepc``: 32 kHz mono (torchaudio-style resampling), peak above 1
        divided by min(2, peak), linear spectrogram ``[1, 1025, frames]``."""
        wav = audio_lib.load_reference(path, sr=SAMPLE_RATE)
        if wav.shape[-1] < 2048:
            raise ValueError(f"reference audio {path} is too short for a spectrogram (needs >= 2048 samples at 32 kHz)")
        return np.asarray(audio_lib.spectrogram(wav))

    # ------------------------------------------------------------------------------ synthesis
    def synthesize(self, text: str, text_lang: str, ref_wav_path=None, ref_text: str = "", ref_lang: str = "zh",
                   *, top_k: int = 15, top_p: float = 1.0, temperature: float = 1.0,
                   repetition_penalty: float = 1.35, speed: float = 1.0, cut: str = "cut1",
                   noise_scale: float = 0.5, seed: int = 0, aux_refs: Sequence = (), batch_size: int = 8,
                   pause: float = 0.3, max_new_tokens: int = 1500,
                   progress: Callable[[str, int, int], None] | None = None):
        """Text -> ``(wav float32 [N], 32000)``. Languages use the original's codes ("zh", "en",
        "ja", "ko", "yue", "auto", "auto_yue", "all_zh", ...). An empty ``ref_text`` selects the
        reference-free mode (no prompt tokens), as in the original."""
        timings = {"frontend": 0.0, "bert": 0.0, "hubert": 0.0, "s1": 0.0, "s2": 0.0}
        progress = progress or (lambda stage, done, total: None)
        if ref_wav_path is None:
            raise ValueError("a reference audio file is needed (ref_wav_path)")
        if text_lang not in self.languages:
            raise ValueError(f"unknown target language {text_lang!r}; use one of {', '.join(self.languages)}")
        ref_text = (ref_text or "").strip("\n")
        ref_free = not ref_text.strip()

        t0 = time.perf_counter()
        segments = segmentation.prepare_segments(text, text_lang, cut)
        timings["frontend"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = self.reference(ref_wav_path, need_prompt=not ref_free)
        specs = [ref.spec] + [self.reference(p, need_prompt=False).spec for p in aux_refs]
        timings["hubert"] += time.perf_counter() - t0
        progress("reference", 1, 1)

        t0 = time.perf_counter()
        bert_before = self._bert_seconds
        prompt_seq = None
        if not ref_free:
            if ref_lang not in self.languages:
                raise ValueError(f"unknown reference language {ref_lang!r}; use one of {', '.join(self.languages)}")
            if ref_text[-1] not in segmentation.SPLIT_MARKS:
                ref_text += segmentation.closing_mark(ref_lang)
            prompt_seq = self.phones_and_bert(ref_text, ref_lang)
        targets = []
        for i, seg in enumerate(segments):
            targets.append(self.phones_and_bert(seg, text_lang))
            progress("text", i + 1, len(segments))
        timings["bert"] = self._bert_seconds - bert_before
        timings["frontend"] += time.perf_counter() - t0 - timings["bert"]

        # S1: batched over segments
        t0 = time.perf_counter()
        tokens: list[np.ndarray] = []
        for start in range(0, len(targets), batch_size):
            chunk = targets[start:start + batch_size]
            full = [prompt_seq + t if prompt_seq is not None else t for t in chunk]
            tokens.extend(self._generate(full, None if ref_free else ref.prompt_codes, top_k=top_k, top_p=top_p,
                                         temperature=temperature, repetition_penalty=repetition_penalty,
                                         max_new_tokens=max_new_tokens, seed=seed + start))
            progress("s1", min(start + batch_size, len(targets)), len(targets))
        timings["s1"] += time.perf_counter() - t0

        # S2: batched over segments
        t0 = time.perf_counter()
        wavs: list[np.ndarray] = []
        for start in range(0, len(targets), batch_size):
            rows = range(start, min(start + batch_size, len(targets)))
            codes = _pad([tokens[i] for i in rows])
            phones = _pad([targets[i].ids for i in rows])
            wavs.extend(self.s2.decode(codes, phones, specs if len(specs) > 1 else specs[0],
                                       noise_scale=noise_scale, speed=speed,
                                       codes_lens=[len(tokens[i]) for i in rows],
                                       phones_lens=[len(targets[i].ids) for i in rows], seed=seed + start))
            progress("s2", rows.stop, len(targets))
        timings["s2"] += time.perf_counter() - t0

        gap = np.zeros(int(SAMPLE_RATE * pause), np.float32)
        pieces = []
        for w in wavs:
            w = np.asarray(w, np.float32)
            peak = float(np.abs(w).max()) if w.size else 0.0
            pieces += [w / peak if peak > 1 else w, gap]
        out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        timings["audio_seconds"] = len(out) / SAMPLE_RATE
        timings["segments"] = len(segments)
        self.last_timings = timings
        return out, SAMPLE_RATE

    def _generate(self, seqs: list[PhoneSequence], prompt, **kwargs) -> list[np.ndarray]:
        x = _pad([s.ids for s in seqs])
        x_lens = np.array([len(s.ids) for s in seqs], np.int32)
        bert = np.zeros((len(seqs), seqs[0].bert.shape[0], x.shape[1]), np.float32)
        for i, s in enumerate(seqs):
            bert[i, :, : s.bert.shape[1]] = s.bert
        prompts = None
        if prompt is not None:
            prompts = np.repeat(np.asarray(prompt, np.int32)[None], len(seqs), 0)
        rows = self.s1.generate(x, bert, prompts, x_lens=x_lens, **kwargs)
        out = []
        for r in rows:
            r = np.asarray(r, np.int32)
            out.append(r if len(r) else np.zeros((1,), np.int32))  # the original's "bad zero prediction"
        return out


def _pad(rows: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
