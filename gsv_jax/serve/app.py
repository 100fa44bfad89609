"""The HTTP API: the original ``api_v2.py`` endpoints with its parameters, defaults and answers, plus
reference upload, voices, an OpenAI-compatible ``/v1/audio/speech``, ``/health`` and a web page
(docs/server.md). Bad input answers 400 with the original's JSON shape ``{"message", "Exception"}``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pathlib
import queue
import random
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gsv_jax.inference.tts import Sampling
from gsv_jax.serve import media
from gsv_jax.serve.engine import END, Engine, Params
from gsv_jax.serve.webui import PAGE
from gsv_jax.text import segmentation

log = logging.getLogger(__name__)

STREAMING_MODE_MESSAGE = "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)"


class TTS_Request(BaseModel):
    """Every parameter of the original's ``TTS_Request`` with its defaults (+ ``voice``)."""

    text: str | None = None
    text_lang: str | None = None
    ref_audio_path: str | None = None
    aux_ref_audio_paths: list | None = None
    prompt_lang: str | None = None
    prompt_text: str = ""
    top_k: int = 15
    top_p: float = 1
    temperature: float = 1
    text_split_method: str = "cut5"
    batch_size: int = 1
    batch_threshold: float = 0.75
    split_bucket: bool = True
    speed_factor: float = 1.0
    fragment_interval: float = 0.3
    seed: int = -1
    media_type: str = "wav"
    streaming_mode: bool | int | str = False
    parallel_infer: bool = True
    repetition_penalty: float = 1.35
    sample_steps: int = 32
    super_sampling: bool = False
    overlap_length: int = 2
    min_chunk_length: int = 16
    voice: str | None = None  # beyond the original: a name from --voices instead of a reference


class Speech(BaseModel):
    """OpenAI ``POST /v1/audio/speech``."""

    model: str = "gpt-sovits"
    input: str | None = None
    voice: str | None = None
    response_format: str | None = None
    speed: float = 1.0
    language: str = "auto"  # beyond OpenAI: the text's language code


class BadRequest(Exception):
    def __init__(self, message: str, exception: str | None = None):
        super().__init__(message)
        self.body = {"message": message} if exception is None else {"message": message, "Exception": exception}


def bad(message: str, exception: Any = None, status: int = 400) -> JSONResponse:
    body = {"message": message}
    if exception is not None:
        body["Exception"] = str(exception)
    return JSONResponse(status_code=status, content=body)


@dataclasses.dataclass
class ServerConfig:
    voices: dict = dataclasses.field(default_factory=dict)
    max_text_length: int = 2000
    max_upload_bytes: int = 20 * 1024 * 1024
    timeout: float = 300.0
    max_batch: int = 8
    max_new_tokens: int | None = None  # lower bound than the model's, if set
    argv: tuple = ()


def parse_streaming_mode(value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return int(text == "true")
        try:
            mode = int(text)
        except ValueError:
            raise BadRequest(STREAMING_MODE_MESSAGE) from None
    if mode not in (0, 1, 2, 3):
        raise BadRequest(STREAMING_MODE_MESSAGE)
    return mode


def load_voices(path) -> dict:
    """``voices.json``: ``name -> {"ref_audio_path", "prompt_text", "prompt_lang"[, "aux_ref_audio_paths"]}``;
    relative paths are relative to the file."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--voices {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--voices {path} is not valid UTF-8 JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--voices {path}: expected an object name -> {{ref_audio_path, prompt_text, prompt_lang}}")
    voices = {}
    for name, v in data.items():
        if not isinstance(v, dict) or not v.get("ref_audio_path"):
            raise ValueError(f"--voices {path}: voice {name!r} needs at least \"ref_audio_path\"")
        ref = pathlib.Path(v["ref_audio_path"])
        ref = ref if ref.is_absolute() else path.parent / ref
        if not ref.is_file():
            raise ValueError(f"--voices {path}: voice {name!r}: reference {ref} not found")
        aux = [str(p if pathlib.Path(p).is_absolute() else path.parent / p) for p in v.get("aux_ref_audio_paths", [])]
        voices[name] = {"ref_audio_path": str(ref), "prompt_text": str(v.get("prompt_text", "")),
                        "prompt_lang": str(v.get("prompt_lang", "zh")).lower(), "aux_ref_audio_paths": aux}
    return voices


class Server:
    """State behind the app: the TTS, the engine, the voices and the limits."""

    def __init__(self, tts, config: ServerConfig):
        self.tts, self.config = tts, config
        self.voices = dict(config.voices)
        self.engine = Engine(tts, max_batch=config.max_batch, timeout=config.timeout)
        self.upload_dir = pathlib.Path(tempfile.mkdtemp(prefix="gsv_serve_uploads_"))
        self.started = time.time()

    # -- request -> Params ---------------------------------------------------------------------
    def params_from(self, req: dict, upload: pathlib.Path | None) -> tuple[Params, str]:
        """The original's ``check_params`` (same messages) plus the limits; returns (params, media_type)."""
        langs = self.tts.languages
        voice = self._voice(req.get("voice"))
        if upload is not None:
            req["ref_audio_path"] = str(upload)
        elif req.get("ref_audio_path") in (None, "") and voice:
            req["ref_audio_path"] = voice["ref_audio_path"]
            if not req.get("prompt_text"):
                req["prompt_text"] = voice["prompt_text"]
            if not req.get("aux_ref_audio_paths"):
                req["aux_ref_audio_paths"] = voice["aux_ref_audio_paths"]
        if req.get("prompt_lang") in (None, "") and voice:
            req["prompt_lang"] = voice["prompt_lang"]
        text, text_lang = req.get("text"), req.get("text_lang")
        prompt_lang = req.get("prompt_lang")
        if req.get("ref_audio_path") in (None, ""):
            raise BadRequest("ref_audio_path is required")
        if text in (None, ""):
            raise BadRequest("text is required")
        if text_lang in (None, ""):
            raise BadRequest("text_lang is required")
        if text_lang.lower() not in langs:
            raise BadRequest(f"text_lang: {text_lang} is not supported in version {self.tts.version}")
        if prompt_lang in (None, ""):
            raise BadRequest("prompt_lang is required")
        if prompt_lang.lower() not in langs:
            raise BadRequest(f"prompt_lang: {prompt_lang} is not supported in version {self.tts.version}")
        media_type = req.get("media_type") or "wav"
        mode = parse_streaming_mode(req.get("streaming_mode", False))
        if mode >= 2 and self.tts.family.decoder == "cfm":
            # as the original: v3/v4 cannot stream tokens and fall back to one fragment per segment
            log.info("SoVITS %s does not stream; streaming_mode %d answered as mode 1", self.tts.version, mode)
            mode = 1
        try:
            media.check(media_type, mode > 0)
        except media.MediaError as e:
            raise BadRequest(str(e)) from None
        cut = req.get("text_split_method") or "cut5"
        if cut not in segmentation.CUT_METHODS:
            raise BadRequest(f"text_split_method:{cut} is not supported")
        if len(text) > self.config.max_text_length:
            raise BadRequest(f"text is too long: {len(text)} characters, the limit is {self.config.max_text_length} "
                             "(the server's --max-text-length); split it into several requests")
        checks = [
            (req["top_k"] >= 1, f"top_k must be >= 1 (1 = greedy), got {req['top_k']}"),
            (0 < req["top_p"] <= 1, f"top_p must be in (0, 1], got {req['top_p']}"),
            (req["temperature"] > 0, f"temperature must be > 0, got {req['temperature']}"),
            (req["repetition_penalty"] > 0, f"repetition_penalty must be > 0, got {req['repetition_penalty']}"),
            (0 < req["speed_factor"] <= 10, f"speed_factor must be in (0, 10], got {req['speed_factor']}"),
            (0 <= req["fragment_interval"] <= 10, f"fragment_interval must be in [0, 10] s, got {req['fragment_interval']}"),
            (req["batch_size"] >= 1, f"batch_size must be >= 1, got {req['batch_size']}"),
            (req["overlap_length"] >= 0, f"overlap_length must be >= 0, got {req['overlap_length']}"),
            (req["min_chunk_length"] >= 1, f"min_chunk_length must be >= 1, got {req['min_chunk_length']}"),
            (1 <= req["sample_steps"] <= 128, f"sample_steps must be in [1, 128], got {req['sample_steps']}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadRequest(message)
        seed = int(req.get("seed", -1))
        if seed == -1:
            seed = random.randrange(1 << 31)  # the original's "random"
        aux = [p for p in (req.get("aux_ref_audio_paths") or []) if p and os.path.isfile(p)]  # missing: skipped
        params = Params(text=text, text_lang=text_lang.lower(), ref_audio_path=req["ref_audio_path"],
                        prompt_text=req.get("prompt_text") or "", prompt_lang=prompt_lang.lower(),
                        aux_ref_audio_paths=tuple(aux),
                        sampling=Sampling(int(req["top_k"]), float(req["top_p"]), float(req["temperature"]),
                                          float(req["repetition_penalty"])),
                        cut=cut, speed=float(req["speed_factor"]), fragment_interval=float(req["fragment_interval"]),
                        seed=seed, streaming_mode=mode, overlap_length=int(req["overlap_length"]),
                        min_chunk_length=int(req["min_chunk_length"]), max_new_tokens=self.config.max_new_tokens,
                        sample_steps=int(req["sample_steps"]))
        return params, media_type

    def _voice(self, name):
        if name not in (None, ""):
            if name not in self.voices:
                raise BadRequest(f"voice: {name} is not known; the server has {', '.join(self.voices) or 'no voices'} "
                                 "(--voices voices.json)")
            return self.voices[name]
        return self.voices.get("default")

    def start_job(self, params: Params):
        """Prepare (text, reference) under a lease, then queue the job. Runs in a worker thread."""
        with self.engine.lease() as release:
            prepared = self.tts.prepare(params.text, params.text_lang, params.ref_audio_path, params.prompt_text,
                                        params.prompt_lang, cut=params.cut, aux_refs=params.aux_ref_audio_paths)
            return self.engine.submit(params, prepared, release)

    async def save_upload(self, upload) -> pathlib.Path:
        data = await upload.read(self.config.max_upload_bytes + 1)
        if len(data) > self.config.max_upload_bytes:
            raise BadRequest(f"the uploaded reference is larger than {self.config.max_upload_bytes // (1024 * 1024)} MB "
                             "(the server's --max-upload-mb); send a 3-10 s clip")
        if not data:
            raise BadRequest("the uploaded reference is empty")
        suffix = pathlib.Path(upload.filename or "ref.wav").suffix[:8] or ".wav"
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.upload_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return pathlib.Path(name)

    # -- responses --------------------------------------------------------------------------------
    async def respond(self, req: dict, request: Request, upload=None):
        path = None
        try:
            if upload is not None:
                path = await self.save_upload(upload)
            params, media_type = self.params_from(req, path)
        except BadRequest as e:
            if path is not None:
                path.unlink(missing_ok=True)
            return JSONResponse(status_code=400, content=e.body)
        try:
            job = await run_in_threadpool(self.start_job, params)
        except Exception as e:  # noqa: BLE001 - the original: any failure -> 400 "tts failed"
            return bad("tts failed", e)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)  # read into the reference cache already
        sr = self.tts.sample_rate
        if params.streaming_mode == 0:
            return await self._whole(job, request, media_type, sr)
        return StreamingResponse(self._stream(job, media_type, sr), media_type=f"audio/{media_type}",
                                 headers={"X-Sample-Rate": str(sr)})

    async def _next(self, job, request: Request | None):
        while True:
            try:
                return job.out.get_nowait()
            except queue.Empty:
                pass
            if time.monotonic() > job.deadline:
                job.cancel()
                return TimeoutError(f"request timed out after {self.config.timeout:.0f} s (the server's --timeout)")
            if request is not None and await request.is_disconnected():
                job.cancel()
                return None
            await asyncio.sleep(0.01)

    async def _whole(self, job, request, media_type, sr):
        pieces = []
        while True:
            item = await self._next(job, request)
            if item is None:
                return Response(status_code=499)
            if isinstance(item, BaseException):
                return bad("tts failed", item, status=504 if isinstance(item, TimeoutError) else 400)
            if item is END:
                break
            pieces.append(item)
        wav = np.concatenate(pieces) if pieces else np.zeros(sr, np.float32)
        try:
            body = await run_in_threadpool(media.encode, wav, sr, media_type)
        except media.MediaError as e:
            return bad("tts failed", e)
        return Response(body, media_type=f"audio/{media_type}", headers={"X-Sample-Rate": str(sr)})

    async def _stream(self, job, media_type, sr):
        enc = media.StreamEncoder(media_type, sr)
        try:
            head = enc.header()
            if head:
                yield head
            while True:
                item = await self._next(job, None)
                if item is END or item is None:
                    return
                if isinstance(item, BaseException):
                    log.warning("stream ended by an error: %s", item)
                    return
                yield await run_in_threadpool(enc.piece, item) if media_type in ("ogg", "aac") else enc.piece(item)
        finally:
            job.cancel()  # a client that went away frees its rows at the next chunk

    # -- weights ------------------------------------------------------------------------------------
    def switch(self, kind: str, path: str):
        import gsv_jax

        p = pathlib.Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{path} does not exist")
        model = gsv_jax.load_s1(p) if kind == "gpt" else gsv_jax.load_s2(p)
        with self.engine.exclusive():
            if kind == "gpt":
                self.tts.replace_models(s1=model)
            else:
                self.tts.replace_models(s2=model)


def create_app(tts, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    server = Server(tts, config)
    app = FastAPI(title="gsv-jax TTS server", version="1")
    app.state.server = server

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):  # FastAPI's 422 -> the original's 400 shape
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return bad(f"invalid parameter {where}: {first.get('msg', 'bad value')}", json.dumps(exc.errors(), default=str))

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return PAGE

    @app.get("/health")
    async def health():
        return {"status": "ok", "version": tts.version, "sample_rate": tts.sample_rate,
                "languages": list(tts.languages), "voices": sorted(server.voices),
                "media_types": list(media.available()), "active_requests": server.engine.active,
                "max_new_tokens": tts.max_new_tokens, "stats": dict(server.engine.stats),
                "uptime_seconds": round(time.time() - server.started, 1)}

    @app.get("/voices")
    async def voices():
        return {name: {"prompt_text": v["prompt_text"], "prompt_lang": v["prompt_lang"]}
                for name, v in server.voices.items()}

    @app.get("/tts")
    async def tts_get(request: Request, text: str | None = None, text_lang: str | None = None,
                      ref_audio_path: str | None = None, aux_ref_audio_paths: list[str] | None = Query(None),  # noqa: B008
                      prompt_lang: str | None = None, prompt_text: str = "", top_k: int = 15, top_p: float = 1,
                      temperature: float = 1, text_split_method: str = "cut5", batch_size: int = 1,
                      batch_threshold: float = 0.75, split_bucket: bool = True, speed_factor: float = 1.0,
                      fragment_interval: float = 0.3, seed: int = -1, media_type: str = "wav",
                      parallel_infer: bool = True, repetition_penalty: float = 1.35, sample_steps: int = 32,
                      super_sampling: bool = False, streaming_mode: str = "false", overlap_length: int = 2,
                      min_chunk_length: int = 16, voice: str | None = None):
        req = {k: v for k, v in locals().items() if k not in ("request", "server")}
        return await server.respond(req, request)

    @app.post("/tts")
    async def tts_post(request: Request):
        ctype = request.headers.get("content-type", "")
        upload = None
        try:
            if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
                form = await request.form()
                fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and k != "aux_ref_audio_paths"}
                aux = [v for v in form.getlist("aux_ref_audio_paths") if isinstance(v, str)]
                if aux:
                    fields["aux_ref_audio_paths"] = aux
                upload = form.get("ref_audio") or form.get("ref_audio_file")
                if isinstance(upload, str):
                    upload = None
                body = TTS_Request(**fields)
            else:
                body = TTS_Request(**(await request.json()))
        except json.JSONDecodeError as e:
            return bad("the request body is not JSON (send a JSON TTS_Request or multipart form data)", e)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            return bad("invalid request", e)
        return await server.respond(body.model_dump(), request, upload)

    @app.api_route("/control", methods=["GET", "POST"])
    async def control(request: Request, command: str | None = None):
        if command is None and request.method == "POST":
            try:
                command = (await request.json()).get("command")
            except Exception:  # noqa: BLE001
                command = None
        if command is None:
            return bad("command is required")
        if command not in ("restart", "exit"):
            return bad(f"command: {command} is not supported; use restart or exit")
        threading.Timer(0.2, _control, args=(command, config.argv)).start()  # answer first, then act
        return {"message": "success"}

    @app.get("/set_gpt_weights")
    async def set_gpt_weights(weights_path: str | None = None):
        if weights_path in ("", None):
            return bad("gpt weight path is required")
        try:
            await run_in_threadpool(server.switch, "gpt", weights_path)
        except Exception as e:  # noqa: BLE001 - the old model stays loaded
            return bad("change gpt weight failed", e)
        return {"message": "success"}

    @app.get("/set_sovits_weights")
    async def set_sovits_weights(weights_path: str | None = None):
        if weights_path in ("", None):
            return bad("sovits weight path is required")
        try:
            await run_in_threadpool(server.switch, "sovits", weights_path)
        except Exception as e:  # noqa: BLE001
            return bad("change sovits weight failed", e)
        return {"message": "success"}

    @app.get("/set_refer_audio")
    async def set_refer_audio(refer_audio_path: str | None = None):
        try:
            if refer_audio_path in ("", None):
                raise ValueError("refer_audio_path is required")
            await run_in_threadpool(tts.reference, refer_audio_path)  # 3-10 s, decodable: checked now
        except Exception as e:  # noqa: BLE001
            return bad("set refer audio failed", e)
        default = dict(server.voices.get("default", {"prompt_text": "", "prompt_lang": "zh",
                                                     "aux_ref_audio_paths": []}))
        default["ref_audio_path"] = refer_audio_path
        server.voices["default"] = default
        return {"message": "success"}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        try:
            body = Speech(**(await request.json()))
        except Exception as e:  # noqa: BLE001
            return _openai_error(f"invalid request: {e}")
        if not body.input:
            return _openai_error("input is required")
        name = body.voice or "default"
        if name not in server.voices:
            return _openai_error(f"voice {name!r} is not known; the server has {', '.join(server.voices) or 'none'} "
                                 "(--voices voices.json)")
        fmt = body.response_format or ("mp3" if media.ffmpeg() else "wav")
        media_type = {"pcm": "raw", "wav": "wav", "flac": "flac", "aac": "aac", "mp3": "mp3", "opus": "opus"}.get(fmt)
        if media_type is None or (media_type in ("mp3", "aac", "opus") and not media.ffmpeg()):
            return _openai_error(f"response_format {fmt!r} is not available on this server; use wav, pcm or flac"
                                 + ("" if media.ffmpeg() else " (mp3/aac/opus need ffmpeg)"))
        v = server.voices[name]
        req = TTS_Request(text=body.input, text_lang=body.language, ref_audio_path=v["ref_audio_path"],
                          aux_ref_audio_paths=v["aux_ref_audio_paths"], prompt_text=v["prompt_text"],
                          prompt_lang=v["prompt_lang"], speed_factor=body.speed, media_type="wav").model_dump()
        resp = await server.respond(req, request)
        if media_type == "wav" or resp.status_code != 200:
            return resp
        wav = _wav_to_float(resp.body)
        out = await run_in_threadpool(media.encode, wav, tts.sample_rate, media_type)
        return Response(out, media_type={"raw": "audio/pcm", "opus": "audio/ogg"}.get(media_type, f"audio/{media_type}"),
                        headers={"X-Sample-Rate": str(tts.sample_rate)})

    @app.on_event("shutdown")
    def _shutdown():
        server.engine.close()

    return app


def _openai_error(message: str) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": {"message": message, "type": "invalid_request_error"},
                                                  "message": message})


def _wav_to_float(data: bytes) -> np.ndarray:
    import io

    import soundfile as sf

    return sf.read(io.BytesIO(data), dtype="float32")[0]


def _control(command: str, argv: tuple) -> None:
    if command == "restart":
        os.execv(sys.executable, [sys.executable, "-m", "gsv_jax.serve", *argv])
    os.kill(os.getpid(), signal.SIGTERM)
