"""Dataset preparation on the demo corpus with fake (fast, deterministic) feature models:
counts and shapes, resuming, sharding, bad inputs, killing midway, original-layout round trip."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from gsv_jax.data import original_layout
from gsv_jax.data.format import open_dataset
from gsv_jax.data.prepare import StageStore, parse_shard, prepare, read_list, shard_of

from .fakes import DEMO_LIST, fake_models

REPO = pathlib.Path(__file__).resolve().parents[2]
ALL = ("text", "audio", "semantic", "pack")


def _demo_names():
    entries, skipped = read_list(DEMO_LIST)
    assert not skipped
    return [e.name for e in entries], {e.name: e for e in entries}


def _run(out, **kw):
    kw.setdefault("progress", False)
    return prepare(DEMO_LIST, out, fake_models(), **kw)


def test_full_run_counts_shapes_and_rerun_skips(tmp_path):
    names, entries = _demo_names()
    s = _run(tmp_path, stages=ALL)
    for stage in ("text", "audio", "semantic"):
        assert s["stages"][stage]["new"] == len(names), (stage, s["stages"][stage])
        assert not s["stages"][stage]["failed"]
    ds = open_dataset(tmp_path)
    assert sorted(ds.names) == sorted(names) and len(ds) == len(names)
    for i in range(len(ds)):
        item = ds[i]
        e = entries[item["name"]]
        assert item["lang"] == e.lang and item["text"] == e.text
        n_ph = len(item["phone_ids"])
        assert n_ph == len(item["phones"].split()) > 0
        assert item["bert"].shape == (1024, n_ph) and item["bert"].dtype == np.float16
        assert item["bert"].any() == (e.lang == "zh")  # real features only for zh
        if e.lang in ("zh", "yue"):
            assert item["word2ph"].sum() == n_ph and len(item["word2ph"]) == len(item["norm_text"])
        # audio: 32 kHz int16 with the original's loudness mix (peak ~ 0.95*0.5 + 0.5*peak_in)
        dur = sf.info(e.wav).duration
        assert abs(len(item["wav32k"]) - dur * 32000) <= 2
        assert 0.45 < np.abs(item["wav32k"]).max() / 32768 < 0.75
        t_ssl = item["ssl"].shape[1]
        assert item["ssl"].shape[0] == 768 and abs(t_ssl - len(item["wav32k"]) / 640) <= 1
        assert item["semantic"].shape == (t_ssl // 2,) and item["semantic"].dtype == np.int32
    np.testing.assert_array_equal(ds.lengths("semantic"), [len(ds[i]["semantic"]) for i in range(len(ds))])
    assert ds.meta["symbol_version"] == "v2" and ds.meta["sample_rate"] == 32000

    mtime = (tmp_path / "data-00000-of-00001.array_record").stat().st_mtime_ns
    again = _run(tmp_path, stages=ALL)
    for stage in ("text", "audio", "semantic"):
        assert again["stages"][stage]["new"] == 0 and again["stages"][stage]["already_done"] == len(names)
    assert again["stages"]["pack"]["already_done"] == len(names) and again["stages"]["pack"]["new"] == 0
    assert (tmp_path / "data-00000-of-00001.array_record").stat().st_mtime_ns == mtime


def test_stages_one_by_one_and_two_shards(tmp_path):
    names, _ = _demo_names()
    for i in range(2):
        s = _run(tmp_path, stages=["semantic"], shard=i, num_shards=2)
        assert set(s["stages"]["semantic"]["blocked"].values()) == {"audio stage not run yet"}
        for stage in ("text", "audio", "semantic", "pack"):
            _run(tmp_path, stages=[stage], shard=i, num_shards=2)
        if i == 0:
            with pytest.raises(ValueError, match=r"shard\(s\) \[1\] of 2 are not finished"):
                open_dataset(tmp_path)
    ds = open_dataset(tmp_path)
    assert len(ds.shard_paths) == 2 and sorted(ds.names) == sorted(names)
    for k, p in enumerate(ds.shard_paths):
        part = open_dataset(tmp_path, shards=[k])
        assert all(shard_of(n, 2) == k for n in part.names)
    # re-packing as a single shard replaces the two-shard set
    _run(tmp_path, stages=["pack"])
    assert sorted(open_dataset(tmp_path).names) == sorted(names)
    assert len(open_dataset(tmp_path).shard_paths) == 1


def test_bad_inputs_are_reported_and_skipped(tmp_path):
    names, _entries = _demo_names()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + os.urandom(64))
    sf.write(bad / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(bad / "ok_but_no_text.wav", np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
    lines = DEMO_LIST.read_text().splitlines()
    lines = [f"{DEMO_LIST.parent / line.split('|', 1)[0]}|{line.split('|', 1)[1]}" for line in lines]
    lines += [
        f"{bad / 'corrupt.wav'}|spk|ZH|你好。",
        f"{bad / 'silent.wav'}|spk|ZH|你好。",
        f"{bad / 'ok_but_no_text.wav'}|spk|ZH|   ",
        f"{bad / 'missing.wav'}|spk|ZH|你好。",
        f"{bad / 'french.wav'}|spk|FR|bonjour",
        "only|three|fields",
    ]
    lst = tmp_path / "bad.list"
    lst.write_text("\n".join(lines) + "\n")
    s = prepare(lst, tmp_path / "out", fake_models(), progress=False)
    assert s["stages"]["text"]["failed"] == {"ok_but_no_text.wav": "empty transcript"}
    audio_failed = s["stages"]["audio"]["failed"]
    assert set(audio_failed) == {"corrupt.wav", "silent.wav", "missing.wav"}
    assert "cannot decode" in audio_failed["corrupt.wav"]
    assert "silent" in audio_failed["silent.wav"]
    assert "not found" in audio_failed["missing.wav"]
    reasons = [d["reason"] for d in s["skipped_lines"]]
    assert any("'FR' is not supported" in r for r in reasons) and any("expected 4" in r for r in reasons)
    blocked = s["stages"]["pack"]["blocked"]
    assert set(blocked) == {"corrupt.wav", "silent.wav", "missing.wav", "ok_but_no_text.wav"}
    assert blocked["ok_but_no_text.wav"] == "text stage failed: empty transcript"
    assert sorted(open_dataset(tmp_path / "out").names) == sorted(names)
    saved = json.loads((tmp_path / "out" / "work" / "summary-s00000of00001.json").read_text())
    assert saved["stages"]["audio"]["failed"] == audio_failed
    # failures are remembered: a rerun does not retry them unless asked
    again = prepare(lst, tmp_path / "out", fake_models(), progress=False)
    assert again["stages"]["audio"]["new"] == 0 and set(again["stages"]["audio"]["failed"]) == set(audio_failed)
    retry = prepare(lst, tmp_path / "out", fake_models(), progress=False, retry_failed=True, stages=["audio"])
    assert retry["stages"]["audio"]["new"] == 0 and len(retry["stages"]["audio"]["failed"]) == 3


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from tests.data.fakes import DEMO_LIST, fake_models
from gsv_jax.data.prepare import prepare
prepare(DEMO_LIST, {out!r}, fake_models(hubert_delay=0.4, fake_text=True), chunk_items=1, progress=False)
"""


@pytest.mark.slow
def test_kill_midway_and_resume_without_duplicates(tmp_path):
    names, _ = _demo_names()
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT.format(repo=str(REPO), out=str(out))], env=env)
    audio_dir = out / "work" / "audio"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(audio_dir.glob("*.json"))) < 2:
        assert proc.poll() is None, "the preparation finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = StageStore(out, "audio").done
    assert 2 <= len(done_before) < len(names), "kill did not land midway through the audio stage"
    s = prepare(DEMO_LIST, out, fake_models(), progress=False)
    assert s["stages"]["text"]["new"] == 0
    assert s["stages"]["audio"]["new"] == len(names) - len(done_before)
    listed = []
    for manifest in audio_dir.glob("*.json"):
        listed += json.loads(manifest.read_text())["names"]
    assert sorted(listed) == sorted(names)  # every utterance computed exactly once
    ds = open_dataset(out)
    assert sorted(ds.names) == sorted(names)


def test_original_layout_round_trip(tmp_path):
    names, entries = _demo_names()
    _run(tmp_path / "ds")
    ds = open_dataset(tmp_path / "ds")
    exp = tmp_path / "logs" / "exp"
    assert original_layout.export_original(tmp_path / "ds", exp, progress=False) == len(names)
    text_lines = (exp / "2-name2text.txt").read_text().splitlines()
    assert len(text_lines) == len(names) and all(len(line.split("\t")) == 4 for line in text_lines)
    sem = (exp / "6-name2semantic.tsv").read_text().splitlines()
    assert sem[0] == "item_name\tsemantic_audio" and len(sem) == len(names) + 1
    zh = [n for n in names if entries[n].lang == "zh"]
    assert sorted(p.name for p in (exp / "3-bert").iterdir()) == sorted(f"{n}.pt" for n in zh)
    from gsv_jax.io.torch_io import load_torch_file

    first = ds[0]
    ssl = load_torch_file(exp / "4-cnhubert" / f"{first['name']}.pt")
    assert ssl.shape == (1, 768, first["ssl"].shape[1]) and ssl.dtype == np.float32
    wav, sr = sf.read(exp / "5-wav32k" / first["name"], dtype="int16")
    assert sr == 32000
    np.testing.assert_array_equal(wav, first["wav32k"])

    # import it back (languages guessed from the files) and compare every field
    res = original_layout.import_original(exp, tmp_path / "back", num_shards=2, progress=False)
    assert res == {"items": len(names), "skipped": {}}
    back = open_dataset(tmp_path / "back")
    got = {back[i]["name"]: back[i] for i in range(len(back))}
    for i in range(len(ds)):
        a = ds[i]
        b = got[a["name"]]
        assert a["lang"] == b["lang"] and a["norm_text"] == b["norm_text"] and a["phones"] == b["phones"]
        for k in ("phone_ids", "word2ph", "bert", "semantic", "ssl", "wav32k"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_guess_lang():
    g = original_layout.guess_lang
    assert g(["n", "i2"], [2], True) == "zh"
    assert g(["Yn", "Yei5"], [2], False) == "yue"
    assert g(["ㅇ", "ㅏ"], None, False) == "ko"
    assert g([",", "HH", "AH0", "L", "OW1"], None, False) == "en"
    assert g(["k", "o", "N", "n", "i", "ch", "i", "w", "a"], None, False) == "ja"


def test_parse_shard_and_cli_help():
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "x", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    out = subprocess.run([sys.executable, str(REPO / "data" / "prepare.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--shard" in out.stdout and "--import-original" in out.stdout


def test_s1_and_s2_training_pipelines_read_the_result(tmp_path):
    from gsv_jax.data.pipeline import S1BatchIterator, S1DataConfig
    from gsv_jax.data.s2_pipeline import S2BatchIterator, S2DataConfig

    names, _ = _demo_names()
    _run(tmp_path)
    ds = open_dataset(tmp_path)
    s1 = S1BatchIterator(ds, S1DataConfig(batch_size=4, num_threads=1))
    assert len(s1.items) >= len(names)  # every demo clip passes the original's S1 filters
    b = next(s1)
    assert b["x"].shape[0] == 4 and b["bert"].shape[:2] == (4, 1024) and b["y"].shape[0] == 4
    lens = {int(n) for n in b["x_lens"]}
    assert lens <= {int(v) for v in ds.lengths("phone_ids")}
    s2 = S2BatchIterator(ds, S2DataConfig(batch_size=2, num_threads=1))
    b2 = next(s2)
    assert b2["ssl"].shape[0] == 2 and b2["ssl"].shape[2] == 768 and b2["wav"].shape[0] == 2


def test_exported_folder_loads_in_torch_and_original_readers(tmp_path):
    torch = pytest.importorskip("torch")
    from gsv_jax.data.original_s1 import OriginalS1Folder
    from gsv_jax.data.s2_pipeline import OriginalS2Folder

    from .fakes import fake_models as fm

    prepare(DEMO_LIST, tmp_path / "ds", fm(fake_text=True), progress=False)
    exp = tmp_path / "exp"
    original_layout.export_original(tmp_path / "ds", exp, half=True, progress=False)
    ds = open_dataset(tmp_path / "ds")
    item = ds[0]
    ssl = torch.load(exp / "4-cnhubert" / f"{item['name']}.pt", map_location="cpu")
    assert ssl.dtype == torch.float16 and tuple(ssl.shape) == (1, 768, item["ssl"].shape[1])
    np.testing.assert_array_equal(ssl.numpy()[0], item["ssl"])
    zh = next(ds[i] for i in range(len(ds)) if ds[i]["lang"] == "zh")
    bert = torch.load(exp / "3-bert" / f"{zh['name']}.pt", map_location="cpu")
    np.testing.assert_array_equal(bert.numpy(), zh["bert"])
    assert len(OriginalS1Folder(str(exp))) == len(ds) and len(OriginalS2Folder(str(exp))) == len(ds)


def test_batched_hubert_gives_the_same_dataset(tmp_path):
    from .fakes import fake_models as fm

    prepare(DEMO_LIST, tmp_path / "solo", fm(fake_text=True), progress=False)
    s = prepare(DEMO_LIST, tmp_path / "batched", fm(fake_text=True, batched=True), progress=False, batch_size=3)
    assert s["stages"]["audio"]["new"] == 7 and not s["stages"]["audio"]["failed"]
    a, b = open_dataset(tmp_path / "solo"), open_dataset(tmp_path / "batched")
    assert list(a.names) == list(b.names)  # dataset order follows the list, not the batching
    for i in range(len(a)):
        for k in ("ssl", "wav32k", "semantic"):
            np.testing.assert_array_equal(a[i][k], b[i][k])


def test_many_small_chunks_and_few_open_files(tmp_path, monkeypatch):
    from .fakes import fake_models as fm

    monkeypatch.setattr(StageStore, "MAX_OPEN", 2)
    prepare(DEMO_LIST, tmp_path / "a", fm(fake_text=True), progress=False, chunk_items=1)
    prepare(DEMO_LIST, tmp_path / "b", fm(fake_text=True), progress=False, chunk_items=100)
    assert len(list((tmp_path / "a" / "work" / "audio").glob("*.json"))) == 7
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert list(a.names) == list(b.names)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["ssl"], b[i]["ssl"])
        np.testing.assert_array_equal(a[i]["semantic"], b[i]["semantic"])
