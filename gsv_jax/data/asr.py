"""ASR labelling into a ``.list`` through optional backends the user installs (docs/data.md, "ASR").

Backends (neither is a dependency of gsv-jax):

* ``faster-whisper`` (``pip install faster-whisper``): multilingual CTranslate2 Whisper; ``model`` is a
  size name (``large-v3``, ``medium``...) or a local model folder; beam 5, VAD filter with 700 ms
  minimum silence, as the original.
* ``funasr`` (``pip install funasr modelscope``): Chinese / Cantonese; ``model`` is a FunASR model
  name or folder (default ``paraformer-zh`` with ``fsmn-vad`` and ``ct-punc``).

``backend="auto"`` uses faster-whisper when installed (and, like the original, re-transcribes lines
detected as zh/yue with FunASR when that is installed too), else FunASR. Model names are resolved
by the backend libraries (they may download on first use); pass a local folder to stay offline.

Output lines are ``<abs audio path>|<speaker>|<LANG upper-case>|<text>`` (the §4.1 format).
"""
from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aac", ".wma"}
BACKENDS = ("faster-whisper", "funasr")
_MODULES = {"faster-whisper": "faster_whisper", "funasr": "funasr"}
NONE_INSTALLED = (
    "no ASR backend is installed. Install one of them:\n"
    "  pip install faster-whisper          # multilingual (zh en ja ko yue ...)\n"
    "  pip install funasr modelscope       # Chinese / Cantonese (paraformer)\n"
    "or write the transcripts into the .list yourself (wav|speaker|LANG|text)."
)


class ASRUnavailable(RuntimeError):
    """The requested ASR backend (or any backend) is not installed."""


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(_MODULES[b]) is not None]


def _whisper(model: str | None, language: str, device: str, compute_type: str) -> Callable:
    from faster_whisper import WhisperModel

    asr = WhisperModel(model or "large-v3", device=device, compute_type=compute_type)
    lang = None if language == "auto" else language

    def run(path: str) -> tuple[str, str]:
        segments, info = asr.transcribe(path, beam_size=5, vad_filter=True,
                                        vad_parameters={"min_silence_duration_ms": 700}, language=lang)
        return "".join(seg.text for seg in segments).strip(), (info.language or language)

    return run


def _funasr(model: str | None, language: str, device: str) -> Callable:
    from funasr import AutoModel

    kw = {"model": model or "paraformer-zh", "device": device, "disable_update": True}
    if model is None:
        kw.update(vad_model="fsmn-vad", punc_model="ct-punc")
    asr = AutoModel(**kw)

    def run(path: str) -> tuple[str, str]:
        res = asr.generate(input=path)
        text = "".join(r.get("text", "") for r in res) if isinstance(res, list) else str(res)
        return text.strip(), ("zh" if language == "auto" else language)

    return run


def make_transcriber(backend: str = "auto", model: str | None = None, language: str = "auto",
                     device: str = "cpu", compute_type: str = "float32") -> Callable[[str], tuple[str, str]]:
    """``path -> (text, lang)`` with the chosen backend; raises :class:`ASRUnavailable` with install hints."""
    have = installed_backends()
    if backend == "auto":
        if not have:
            raise ASRUnavailable(NONE_INSTALLED)
        backend = "funasr" if (language in ("zh", "yue") and "funasr" in have) else have[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; choose from {BACKENDS + ('auto',)}")
    if backend not in have:
        raise ASRUnavailable(f"ASR backend {backend!r} is not installed ({NONE_INSTALLED})")
    if backend == "funasr":
        return _funasr(model, language, device)
    whisper = _whisper(model, language, device, compute_type)
    if "funasr" not in have:
        return whisper
    zh_asr: list = []

    def run(path: str) -> tuple[str, str]:  # the original re-does zh/yue with FunASR
        text, lang = whisper(path)
        if lang in ("zh", "yue"):
            if not zh_asr:
                zh_asr.append(_funasr(None, lang, device))
            text = zh_asr[0](path)[0]
        return text, lang

    return run


def audio_files(folder) -> list[pathlib.Path]:
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTS)


def transcribe(inputs, out_list, transcriber: Callable[[str], tuple[str, str]], *, speaker: str | None = None,
               progress: bool = True) -> dict:
    """Transcribe a folder of audio, or fill the empty texts of a ``.list`` skeleton (``inputs``
    ending in ``.list``), into ``out_list``. Failures are reported and left out.

    Returns ``{"written": n, "failed": {path: reason}, "list": out_list}``.
    """
    inputs = pathlib.Path(inputs)
    rows: list[tuple[str, str, str | None, str]] = []  # path, speaker, lang (None = detect), text
    if inputs.suffix == ".list":
        for line in inputs.read_text(encoding="utf-8").splitlines():
            if line.strip():
                wav, spk, lang, text = (line.split("|", 3) + ["", "", ""])[:4]
                rows.append((wav, spk, lang or None, text))
    else:
        spk = speaker or inputs.name
        rows = [(str(p.resolve()), spk, None, "") for p in audio_files(inputs)]
    failed, lines = {}, []
    it = rows
    if progress:
        from tqdm import tqdm

        it = tqdm(rows, desc="asr", unit="file", dynamic_ncols=True)
    for wav, spk, lang, text in it:
        if text.strip():
            lines.append(f"{wav}|{spk}|{lang or ''}|{text}")
            continue
        try:
            text, found = transcriber(wav)
        except Exception as e:  # noqa: BLE001 - a bad file must not stop a long labelling run
            failed[wav] = f"{type(e).__name__}: {e}"
            continue
        if not text:
            failed[wav] = "no speech recognised"
            continue
        lines.append(f"{wav}|{spk}|{(lang or found or 'zh').upper()}|{text}")
    out_list = pathlib.Path(out_list)
    out_list.parent.mkdir(parents=True, exist_ok=True)
    out_list.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {"written": len(lines), "failed": failed, "list": out_list}
