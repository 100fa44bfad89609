"""``python -m gsv_jax.serve --model-dir models/v2 [-a 127.0.0.1] [-p 9880] [--voices voices.json]``

Loads the models, compiles the common shapes (a short synthesis per streaming kind), logs a ready
line, then opens the port (docs/server.md).
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import tempfile
import time

log = logging.getLogger("gsv_jax.serve")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gsv_jax.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=pathlib.Path, help="model folder (s1.ckpt, s2.pth, BERT and HuBERT folders)")
    p.add_argument("-a", "--host", "--bind_addr", dest="host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 'None' = every IPv4/IPv6 address)")
    p.add_argument("-p", "--port", type=int, default=9880, help="port (default 9880)")
    p.add_argument("-c", "--tts_config", default=None, help="accepted for the original's command line; ignored "
                   "(this server reads --model-dir)")
    p.add_argument("--voices", type=pathlib.Path, help="voices.json: name -> {ref_audio_path, prompt_text, prompt_lang}")
    p.add_argument("--max-batch", type=int, default=8, help="rows per S1/S2 batch across requests (default 8)")
    p.add_argument("--max-text-length", type=int, default=2000, help="characters per request (default 2000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="size limit of an uploaded reference (MB)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (default 300)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="lower the per-segment token bound (default: the model's, min(1500, 50 x max_sec))")
    p.add_argument("--no-warmup", action="store_true", help="open the port without compiling first")
    p.add_argument("--compilation-cache", default=None,
                   help="folder of the persistent compilation cache (default ~/.cache/gsv_jax; 'off' disables)")
    p.add_argument("--selftest", action="store_true",
                   help="serve tiny random models (no downloads; for trying the API and for tests)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def load(args):
    cache = False if args.compilation_cache == "off" else (args.compilation_cache or True)
    if args.selftest:
        from gsv_jax.inference.selftest import tiny_tts, write_selftest_reference

        scratch = pathlib.Path(tempfile.mkdtemp(prefix="gsv_serve_selftest_"))
        tts = tiny_tts(folder=scratch / "tokenizer", compilation_cache=cache)
        ref = write_selftest_reference(scratch / "selftest_ref.wav")
        return tts, {"default": {"ref_audio_path": str(ref), "prompt_text": "这是参考音频。", "prompt_lang": "zh",
                                 "aux_ref_audio_paths": []}}
    from gsv_jax.inference.tts import TTS

    if args.model_dir is None:
        raise ValueError("give --model-dir <folder> (or --selftest for tiny random models)")
    return TTS.from_folder(args.model_dir, compilation_cache=cache), {}


def warm_up(server, voice: dict | None) -> dict:
    """S1 and S2 at every batch shape up to ``--max-batch``, then one short request per kind of work
    (whole segments, mute-cut streaming) through the engine, so that the first clients compile
    little; returns what was compiled."""
    import jax

    from gsv_jax.inference import buckets
    from gsv_jax.inference.selftest import write_selftest_reference
    from gsv_jax.inference.tts import S2Row, Sampling

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
    t0 = time.perf_counter()
    if voice is None:
        ref = write_selftest_reference(pathlib.Path(tempfile.mkdtemp(prefix="gsv_serve_warmup_")) / "ref.wav")
        voice = {"ref_audio_path": str(ref), "prompt_text": "", "prompt_lang": "zh"}
    lang = "zh" if "zh" in server.tts.languages else server.tts.languages[0]
    tts = server.tts
    if tts.family.decoder == "cfm" and not voice.get("prompt_text"):  # v3/v4 need a prompt text; any will compile
        voice = {**voice, "prompt_text": "这是一段用来测试的参考音频。", "prompt_lang": "zh"}
    job = tts.prepare("你好，今天天气很好。", lang, voice["ref_audio_path"], voice.get("prompt_text", ""),
                      voice.get("prompt_lang", "zh"), cut="cut0")
    row = job.s1_rows(0)[0]
    cap = min(64, server.config.max_new_tokens or 64)  # the first attention window's programs
    sizes = sorted({buckets.batch(n) for n in range(1, server.config.max_batch + 1)})
    for b in sizes:  # every batch shape concurrent requests can make
        tokens, _ = tts.generate_tokens([row] * b, Sampling(), max_new_tokens=cap, on_chunk=lambda *a: False)
        tts.decode_tokens([S2Row(tokens[0], job.targets[0].ids, job.specs, 0, prompt=job.cfm_prompt)] * b)
    for mode in (0, 2, 3):
        req = {"text": "你好，今天天气很好。", "text_lang": lang, "ref_audio_path": voice["ref_audio_path"],
               "prompt_text": voice.get("prompt_text", ""), "prompt_lang": voice.get("prompt_lang", "zh"),
               "top_k": 15, "top_p": 1.0, "temperature": 1.0, "repetition_penalty": 1.35, "speed_factor": 1.0,
               "fragment_interval": 0.3, "batch_size": 1, "overlap_length": 2, "min_chunk_length": 16, "seed": 0,
               "streaming_mode": mode, "media_type": "wav", "text_split_method": "cut5", "sample_steps": 32}
        params, _ = server.params_from(req, None)
        params.max_new_tokens = cap
        job = server.start_job(params)
        while True:
            item = job.out.get(timeout=3600)
            if isinstance(item, BaseException):
                raise item
            if not hasattr(item, "shape"):
                break
    return {"seconds": round(time.perf_counter() - t0, 1), "programs_compiled": len(compiles)}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvicorn

        from gsv_jax.serve.app import ServerConfig, create_app, load_voices

        voices = load_voices(args.voices) if args.voices else {}
        if args.tts_config:
            log.warning("-c/--tts_config %s is ignored: this server reads its models from --model-dir",
                        args.tts_config)
        t0 = time.perf_counter()
        tts, extra = load(args)
        voices = {**extra, **voices}
        log.info("models loaded in %.1f s: %s, %d Hz, token bound %d per segment", time.perf_counter() - t0,
                 tts.version, tts.sample_rate, tts.max_new_tokens)
        config = ServerConfig(voices=voices, max_text_length=args.max_text_length,
                              max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), timeout=args.timeout,
                              max_batch=args.max_batch, max_new_tokens=args.max_new_tokens, argv=tuple(argv))
        app = create_app(tts, config)
        if not args.no_warmup:
            report = warm_up(app.state.server, voices.get("default"))
            log.info("compiled the common shapes (S1 prefill/decode, S2 decode, streaming decode, BERT, HuBERT): "
                     "%d programs in %.1f s", report["programs_compiled"], report["seconds"])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    host = None if args.host == "None" else args.host
    log.info("ready: http://%s:%d (web UI at /, API as api_v2: /tts, /set_gpt_weights, /set_sovits_weights, "
             "/set_refer_audio, /control; /v1/audio/speech; /health)", host or "[::]", args.port)
    uvicorn.run(app, host=host if host is not None else "::", port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
