"""Slicer: cut points checked by hand on synthetic signals (docs/data.md, "Slicer"), edge cases,
the loudness mix, file naming, and the CLI writing clips plus a .list skeleton.

Synthetic signal at sr = 1000 Hz, hop 10 ms -> hop = 10 samples, win = min(100, 4*10) = 40,
min_interval 100 ms = 10 frames, min_length 300 ms = 30 frames, threshold -40 dB = 0.01.
Loud parts are a +-0.5 square wave (RMS 0.5), silences exact zeros. Frame i covers samples
[10i - 20, 10i + 20) of the zero-padded signal, so it is silent iff that range lies inside a
silence [a, b): frames a/10 + 2 ... b/10 - 2.

    samples      0-600 loud | 600-800 silent (frames 62..78, 17 frames)
               800-1400 loud | 1400-1500 silent (frames 142..148, 7 < min_interval: no cut)
              1500-2000 loud | 2000-2800 silent (frames 202..278, 77 frames)
              2800-3500 loud | 3500-4000 trailing silence (frames 352..400; 401 frames in all)

Every argmin over silent frames hits an exact zero, so it picks the first frame of its window.
"""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from gsv_jax.data.slicer import Slicer, SlicerConfig, clip_filename, frame_rms, loudness_mix, to_int16

SR = 1000


def _signal(spans, total):
    y = np.zeros(total, np.float32)
    for a, b in spans:
        y[a:b] = 0.5 * np.where(np.arange(b - a) % 2, 1, -1)
    return y


SIGNAL = _signal([(0, 600), (800, 1400), (1500, 2000), (2800, 3500)], 4000)


def _slicer(max_sil_kept_ms):
    return Slicer(SR, SlicerConfig(threshold_db=-40, min_length_ms=300, min_interval_ms=100, hop_ms=10,
                                   max_sil_kept_ms=max_sil_kept_ms))


@pytest.mark.parametrize(
    "keep_ms, tags, bounds",
    [
        # keep 5 frames: both cut silences are > 2*keep -> (first of the first 6, first of the last 6)
        # 600-800: (62, 74); 2000-2800: (202, 274); trailing: (352, 402)
        (50, [(62, 74), (202, 274), (352, 402)], [(0, 62), (74, 202), (274, 352)]),
        # keep 10: 17 frames <= 2*keep -> pos = argmin[79-10 .. 62+10] = 69, pos_l = 62, pos_r = 69
        # -> (min(62, 69), max(69, 69)) = (62, 69); 77 frames > 20 -> (202, 269)
        (100, [(62, 69), (202, 269), (352, 402)], [(0, 62), (69, 202), (269, 352)]),
        # keep 20: 17 frames <= keep -> one cut at argmin[62..79] = 62 -> (62, 62); 77 > 40 -> (202, 259)
        (200, [(62, 62), (202, 259), (352, 402)], [(0, 62), (62, 202), (259, 352)]),
    ],
)
def test_hand_checked_cut_points(keep_ms, tags, bounds):
    s = _slicer(keep_ms)
    assert (s.hop, s.win, s.min_interval, s.min_length) == (10, 40, 10, 30)
    rms = frame_rms(SIGNAL, s.win, s.hop)
    assert len(rms) == 401
    assert s.silence_tags(rms) == tags
    assert s.cut_points(SIGNAL) == bounds
    clips = s.slice(SIGNAL)
    assert [(c.start, c.end) for c in clips] == [(10 * a, 10 * b) for a, b in bounds]
    for c in clips:
        np.testing.assert_array_equal(c.audio, SIGNAL[c.start : min(len(SIGNAL), c.end)])


def test_leading_silence_and_the_clip_start_rule():
    # 300 silent samples first: frames 0..28 silent (frame 0 sees only padding and zeros);
    # i = 29 > keep = 5 -> leading tag (0, argmin[24..29]) = (0, 24).
    y = _signal([(300, 900), (1100, 1700)], 1700)
    s = _slicer(50)
    # second silence 900-1100: frames 92..108 (17); i = 109, i - clip_start(24) = 85 >= 30 -> (92, 104)
    assert s.silence_tags(frame_rms(y, s.win, s.hop)) == [(0, 24), (92, 104)]
    assert s.cut_points(y) == [(24, 92), (104, 171)]
    # a middle silence right after the previous cut is ignored while the clip is shorter than min_length
    y2 = _signal([(0, 200), (400, 1500)], 1500)  # silence 200-400: frames 22..38, i = 39 >= 30 cuts
    y3 = _signal([(0, 100), (300, 1500)], 1500)  # silence 100-300: frames 12..28, i = 29 < 30: no cut
    assert s.cut_points(y2) == [(0, 22), (34, 151)]
    assert s.cut_points(y3) == [(0, 151)]


def test_edge_cases():
    s = _slicer(50)
    # no silence at all: one clip covering all frames, end offset = frames * hop (may pass the end)
    loud = _signal([(0, 1234)], 1234)
    assert s.cut_points(loud) == [(0, 124)]
    assert s.slice(loud)[0].end == 1240 and len(s.slice(loud)[0].audio) == 1234
    # all silent: the trailing-silence tag swallows everything -> no clip
    assert s.cut_points(np.zeros(2000, np.float32)) == []
    # quirk: at most min_length *samples* (30 here) -> returned whole, unsliced
    assert s.cut_points(np.zeros(30, np.float32)) is None
    assert s.slice(np.zeros(30, np.float32))[0].audio.shape == (30,)
    # trailing silence shorter than min_interval is kept in the last clip
    y = _signal([(0, 1000)], 1080)
    assert s.cut_points(y) == [(0, 109)]
    # stereo input: decisions on the channel mean, cuts applied to both channels
    st = np.stack([SIGNAL, SIGNAL])
    clips = s.slice(st)
    assert [c.audio.shape[0] for c in clips] == [2, 2, 2] and clips[0].audio.shape[1] == 620


def test_frame_rms_matches_naive_definition():
    rng = np.random.default_rng(0)
    y = rng.normal(size=1003).astype(np.float32)
    win, hop = 40, 10
    padded = np.pad(y.astype(np.float64), (20, 20))
    naive = [np.sqrt(np.mean(padded[k : k + win] ** 2)) for k in range(0, len(padded) - win + 1, hop)]
    np.testing.assert_allclose(frame_rms(y, win, hop), naive, rtol=1e-5)
    np.testing.assert_allclose(frame_rms(y, win, hop, block=7), naive, rtol=1e-5)  # blocking changes nothing


def test_config_checks():
    with pytest.raises(ValueError, match="min_length >= min_interval >= hop_size"):
        Slicer(SR, SlicerConfig(min_length_ms=200, min_interval_ms=300))
    with pytest.raises(ValueError, match="max_sil_kept >= hop_size"):
        Slicer(SR, SlicerConfig(hop_ms=20, max_sil_kept_ms=10))
    d = Slicer(32000)  # webui defaults at 32 kHz
    assert (d.threshold, d.hop, d.win, d.min_length, d.min_interval, d.max_sil_kept) == (
        pytest.approx(10 ** (-34 / 20)), 320, 1280, 400, 30, 50)


def test_loudness_mix_and_names():
    x = np.array([0.0, 0.5, -0.25], np.float32)
    np.testing.assert_allclose(loudness_mix(x), x / 0.5 * (0.9 * 0.25) + 0.75 * x)
    loud = np.array([0.0, 2.0, -1.0], np.float32)  # quirk: divided by the peak twice
    np.testing.assert_allclose(loudness_mix(loud), (loud / 2) / 2 * 0.225 + 0.75 * (loud / 2))
    assert loudness_mix(np.zeros(4, np.float32)) is None
    np.testing.assert_array_equal(to_int16(np.array([1.0, -0.99999, 0.5])), [32767, -32766, 16383])
    assert clip_filename("talk.wav", 123, 4567) == "talk.wav_0000000123_0000004567.wav"


def test_slice_cli_writes_clips_and_list(tmp_path):
    src = tmp_path / "rec"
    src.mkdir()
    sr = 32000
    t = np.arange(int(1.2 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    y = np.concatenate([tone, np.zeros(int(0.5 * sr)), tone, np.zeros(int(0.1 * sr))]).astype(np.float32)
    sf.write(src / "talk.wav", y, sr)
    (src / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "clips"
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(repo / "data" / "slice.py"), str(src), "--out", str(out),
                          "--min-length", "1000", "--speaker", "me"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "failed" in res.stdout and "broken.wav" in res.stdout
    clips = sorted(out.glob("*.wav"))
    assert len(clips) == 2 and clips[0].name.startswith("talk.wav_0000000000_")
    lines = (out / "clips.list").read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith("|me|ZH|") for line in lines)
    first, fsr = sf.read(clips[0], dtype="int16")
    assert fsr == 32000 and abs(np.abs(first).max() / 32767 - (0.9 * 0.25 + 0.75 * 0.3)) < 0.01
