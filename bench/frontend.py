"""Text frontend speed: sentences/s on a mixed zh/en/ja/ko paragraph (segmentation + clean_text per
segment, as inference does), plus Mandarin-only and English-only rates. Prints one JSON object.

    python bench/frontend.py [--repeats 3]
"""
import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from gsv_jax import text

MIXED = [
    "今天是2024年3月5日，天气很好，我们去公园散步吧。",
    "I bought 3 apples for $4.50 at the market yesterday.",
    "这个问题不太好回答，你先想一想再说。",
    "GPT-SoVITS是一个few-shot的语音合成系统，效果很不错。",
    "こんにちは、今日はいい天気ですね。",
    "안녕하세요, 만나서 반갑습니다.",
    "他一边吃饭一边看书，一会儿就睡着了。",
    "The meeting starts at 9:30 a.m. on Monday, March 4th.",
    "请拨打13812345678联系我们，或者发邮件。",
    "老王买了一斤苹果、两斤香蕉和三个西瓜，一共花了25.8元。",
]
ZH = [s for s in MIXED if not any(c.isascii() and c.isalpha() for c in s) and not any("\u3040" <= c <= "\u30ff" or "\uac00" <= c <= "\ud7a3" for c in s)]
EN = [s for s in MIXED if s.isascii()]


def phones_for(sentence: str, mode: str = "auto") -> list[str]:
    """Segmentation + clean_text per segment, with the original's short-result retry."""
    def run(s):
        out = []
        for seg, lang in text.split_languages(s, mode=mode):
            out += text.clean_text(seg, lang, version="v2")[0]
        return out
    phones = run(sentence)
    if len(phones) < 6:
        phones = run("." + sentence)
    return phones


CPU_MS = {}


def rate(fn, sentences, repeats, name):
    """Sentences per wall-clock second; also records CPU ms per sentence (robust on a shared box)."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for s in sentences:
            fn(s)
    n = repeats * len(sentences)
    CPU_MS[name] = round(1000 * (time.process_time() - c) / n, 2)
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t = time.perf_counter()
    for s in MIXED:  # warm-up: imports, dictionaries, models
        phones_for(s)
    warmup = time.perf_counter() - t
    out = {
        "bench": "text frontend",
        "warmup_s": round(warmup, 2),
        "mixed_sentences_per_s": round(rate(phones_for, MIXED, args.repeats, "mixed"), 1),
        "zh_sentences_per_s": round(rate(lambda s: text.clean_text(s, "zh", version="v2"), ZH, args.repeats, "zh"), 1),
        "en_sentences_per_s": round(rate(lambda s: text.clean_text(s, "en", version="v2"), EN, args.repeats, "en"), 1),
        "cpu_ms_per_sentence": CPU_MS,
        "sentences": len(MIXED),
        "chars_per_sentence": round(sum(map(len, MIXED)) / len(MIXED), 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
