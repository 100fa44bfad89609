"""Dataset format: round trip, lengths index, validation errors, atomic shards, grain reading."""
import pickle

import numpy as np
import pytest

from gsv_jax.data.format import (
    DatasetFormatError,
    DatasetWriter,
    decode_record,
    encode_record,
    open_dataset,
)


def _item(rng, name, lang="zh", n_ph=6, t_sem=5, wav_len=640):
    return {
        "name": name,
        "lang": lang,
        "text": "你好" if lang == "zh" else "hi",
        "phone_ids": rng.integers(0, 700, n_ph),
        "word2ph": [2] * (n_ph // 2) if lang == "zh" else None,
        "bert": rng.normal(size=(1024, n_ph)).astype(np.float32) if lang == "zh" else None,
        "semantic": rng.integers(0, 1024, t_sem),
        "ssl": rng.normal(size=(768, 2 * t_sem)),
        "wav32k": rng.integers(-3000, 3000, wav_len).astype(np.int16),
    }


def test_codec_round_trip_keeps_dtypes_and_zero_marker():
    rng = np.random.default_rng(0)
    item = {"name": "a", "x": rng.normal(size=(3, 5)).astype(np.float16), "z": np.zeros((1024, 7), np.float16),
            "i": np.arange(3, dtype=np.int32), "e": np.zeros((0,), np.int32)}
    data = encode_record(item)
    assert len(data) < 300  # the zero array is a marker, not 14 KB of zeros
    back = decode_record(data)
    assert back["name"] == "a"
    for k in ("x", "z", "i", "e"):
        assert back[k].dtype == item[k].dtype and back[k].shape == item[k].shape
        np.testing.assert_array_equal(back[k], item[k])
    back["x"][0, 0] = 1  # writable copy
    with pytest.raises(DatasetFormatError, match="bad magic"):
        decode_record(b"nope" + data[4:])


def test_write_read_two_shards_lengths_and_pickle(tmp_path):
    rng = np.random.default_rng(1)
    items = [_item(rng, f"u{i}.wav", "zh" if i % 2 else "en", n_ph=4 + 2 * i, t_sem=3 + i, wav_len=100 * (i + 1))
             for i in range(6)]
    for s in range(2):
        with DatasetWriter(tmp_path, s, 2, meta={"symbol_version": "v2"}) as w:
            for it in items[s::2]:
                w.add(it)
    ds = open_dataset(tmp_path)
    assert len(ds) == 6 and ds.meta["symbol_version"] == "v2"
    order = [it["name"] for it in items[0::2] + items[1::2]]
    assert list(ds.names) == order
    by_name = {it["name"]: it for it in items}
    np.testing.assert_array_equal(ds.lengths("phone_ids"), [len(by_name[n]["phone_ids"]) for n in order])
    np.testing.assert_array_equal(ds.lengths("bert"), ds.lengths("phone_ids"))
    np.testing.assert_array_equal(ds.lengths("semantic"), [len(by_name[n]["semantic"]) for n in order])
    np.testing.assert_array_equal(ds.lengths("ssl"), 2 * ds.lengths("semantic"))
    np.testing.assert_array_equal(ds.lengths("wav32k"), [len(by_name[n]["wav32k"]) for n in order])
    with pytest.raises(KeyError, match="no lengths for field"):
        ds.lengths("nope")
    for i, name in enumerate(order):
        got, want = ds[i], by_name[name]
        assert got["name"] == name and got["lang"] == want["lang"]
        assert got["phone_ids"].dtype == np.int32 and got["semantic"].dtype == np.int32
        assert got["bert"].dtype == np.float16 and got["bert"].shape == (1024, len(want["phone_ids"]))
        assert got["ssl"].dtype == np.float16 and got["wav32k"].dtype == np.int16
        np.testing.assert_array_equal(got["phone_ids"], want["phone_ids"])
        np.testing.assert_array_equal(got["wav32k"], want["wav32k"])
        if want["lang"] == "zh":
            np.testing.assert_array_equal(got["bert"], want["bert"].astype(np.float16))
            np.testing.assert_array_equal(got["word2ph"], want["word2ph"])
        else:
            assert not got["bert"].any() and got["word2ph"].shape == (0,)
    assert ds[-1]["name"] == order[-1]
    with pytest.raises(IndexError):
        ds[6]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[2]["name"] == order[2]
    one = open_dataset(tmp_path, shards=[1])
    assert list(one.names) == order[3:]


def test_grain_reads_the_dataset(tmp_path):
    import grain.python as grain

    rng = np.random.default_rng(2)
    with DatasetWriter(tmp_path) as w:
        for i in range(5):
            w.add(_item(rng, f"g{i}"))
    ds = open_dataset(tmp_path)
    loader = grain.DataLoader(
        data_source=ds,
        sampler=grain.IndexSampler(len(ds), shard_options=grain.NoSharding(), shuffle=False, num_epochs=1),
        operations=[],
        worker_count=0,
    )
    assert [x["name"] for x in loader] == [f"g{i}" for i in range(5)]


def test_validation_errors(tmp_path):
    rng = np.random.default_rng(3)
    w = DatasetWriter(tmp_path)
    bad = _item(rng, "b")
    bad["bert"] = bad["bert"][:, :-1]
    with pytest.raises(DatasetFormatError, match="bert has 5 phone columns"):
        w.add(bad)
    bad = _item(rng, "b")
    del bad["semantic"]
    with pytest.raises(DatasetFormatError, match="lacks field"):
        w.add(bad)
    bad = _item(rng, "b")
    bad["lang"] = "fr"
    with pytest.raises(DatasetFormatError, match="lang 'fr'"):
        w.add(bad)
    bad = _item(rng, "b")
    bad["ssl"] = bad["ssl"][:100]
    with pytest.raises(DatasetFormatError, match="expected \\[768, T\\]"):
        w.add(bad)
    w.add(_item(rng, "ok"))
    with pytest.raises(DatasetFormatError, match="duplicate"):
        w.add(_item(rng, "ok"))
    w.close()
    assert len(open_dataset(tmp_path)) == 1


def test_unfinished_shards_are_invisible_and_reported(tmp_path):
    rng = np.random.default_rng(4)
    with DatasetWriter(tmp_path, 0, 2) as w:
        w.add(_item(rng, "a"))
    w1 = DatasetWriter(tmp_path, 1, 2)
    w1.add(_item(rng, "b"))  # not closed: a crashed writer
    with pytest.raises(DatasetFormatError, match=r"shard\(s\) \[1\] of 2 are not finished"):
        open_dataset(tmp_path)
    assert list(open_dataset(tmp_path, allow_partial=True).names) == ["a"]
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path, 1, 2) as w2:  # an exception inside `with` aborts it
        w2.add(_item(rng, "c"))
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("data-00001-*.array_record"))
    w1.abort()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no data-"):
        open_dataset(tmp_path / "empty")


def test_empty_shard_and_absent_word2ph_lengths(tmp_path):
    rng = np.random.default_rng(5)
    DatasetWriter(tmp_path, 0, 3).close()  # e.g. every item of this shard failed
    with DatasetWriter(tmp_path, 1, 3) as w:
        w.add(_item(rng, "en1", "en", n_ph=4))
        w.add(_item(rng, "zh1", "zh", n_ph=6))
    with DatasetWriter(tmp_path, 2, 3) as w:
        w.add(_item(rng, "en2", "en", n_ph=5))
    ds = open_dataset(tmp_path)
    assert len(ds) == 3 and list(ds.names) == ["en1", "zh1", "en2"]
    np.testing.assert_array_equal(ds.lengths("phone_ids"), [4, 6, 5])
    np.testing.assert_array_equal(ds.lengths("word2ph"), [0, 3, 0])  # absent word2ph has length 0
    assert ds[2]["word2ph"].shape == (0,)
