"""Audio containers for the server's responses (docs/server.md "Media types").

PCM is 16-bit: ``clip(x * 32768)`` (the original's scale; clipped instead of wrapping at +1.0).
A streamed WAV starts with a header whose RIFF and data sizes are 0xFFFFFFFF, the convention for
"length unknown" that browsers, ffmpeg/ffplay, VLC and mpv play as it arrives (the original sent
a header claiming 0 data bytes, which many players treat as an empty file).
"""
from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import soundfile as sf

MEDIA_TYPES = ("wav", "raw", "ogg", "flac", "aac")
STREAMABLE = ("wav", "raw", "ogg", "aac")  # flac needs its length up front: whole-file only
UNKNOWN_SIZE = 0xFFFFFFFF


class MediaError(ValueError):
    """A media type this server cannot produce (the message says which ones it can)."""


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def available() -> tuple:
    return tuple(m for m in MEDIA_TYPES if m != "aac" or ffmpeg())


def check(media_type: str, streaming: bool) -> None:
    if media_type not in MEDIA_TYPES:
        raise MediaError(f"media_type: {media_type} is not supported; use one of {', '.join(available())}")
    if media_type == "aac" and not ffmpeg():
        raise MediaError("media_type: aac needs an ffmpeg binary on the server's PATH, and none was found; "
                         f"use one of {', '.join(available())}")
    if streaming and media_type not in STREAMABLE:
        raise MediaError(f"media_type: {media_type} cannot be streamed (its header needs the length); "
                         "use wav, raw or ogg for streaming_mode 1-3, or streaming_mode 0")


def pcm16(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(wav, np.float32) * 32768.0), -32768, 32767).astype("<i2")


def wav_stream_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length (sizes 0xFFFFFFFF)."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))


def encode(wav: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    """A whole file (or, for ogg/aac, one self-contained piece of a stream)."""
    pcm = pcm16(wav)
    if media_type == "raw":
        return pcm.tobytes()
    if media_type == "aac":
        return _ffmpeg_encode(pcm, sample_rate, ["-c:a", "aac", "-b:a", "192k", "-f", "adts"])
    if media_type == "mp3":
        return _ffmpeg_encode(pcm, sample_rate, ["-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"])
    if media_type == "opus":
        return _ffmpeg_encode(pcm, sample_rate, ["-c:a", "libopus", "-f", "ogg"])
    buf = io.BytesIO()
    fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}[media_type]
    sf.write(buf, pcm, sample_rate, format=fmt[0], subtype=fmt[1])
    return buf.getvalue()


def _ffmpeg_encode(pcm: np.ndarray, sample_rate: int, args: list) -> bytes:
    exe = ffmpeg()
    if exe is None:
        raise MediaError("this media type needs an ffmpeg binary on the server's PATH")
    r = subprocess.run([exe, "-loglevel", "error", "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
                        "-vn", *args, "pipe:1"], input=pcm.tobytes(), capture_output=True, check=False)
    if r.returncode != 0:
        raise MediaError(f"ffmpeg failed: {r.stderr.decode(errors='replace')[-300:]}")
    return r.stdout


class StreamEncoder:
    """Bytes for each streamed piece: wav = the header once, then raw PCM; raw = PCM; ogg/aac = one
    self-contained piece per chunk (chained Ogg streams / ADTS frames, as the original)."""

    def __init__(self, media_type: str, sample_rate: int):
        self.media_type, self.sample_rate = media_type, sample_rate
        self.started = False

    def header(self) -> bytes:
        self.started = True
        return wav_stream_header(self.sample_rate) if self.media_type == "wav" else b""

    def piece(self, wav: np.ndarray) -> bytes:
        if self.media_type in ("wav", "raw"):
            return pcm16(wav).tobytes()
        return encode(wav, self.sample_rate, self.media_type)
