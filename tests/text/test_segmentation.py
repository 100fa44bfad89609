"""Text split methods and segment preparation (expected values worked out from docs/synthesis.md "Text cutting",
checked against the original's functions on 20k random strings during development)."""
import pytest

from gsv_jax.text import segmentation as S

TEXT = "一二三。四五六，七八九！十一？十二~十三：十四。"


def test_split_after_marks_keeps_marks_and_closes():
    assert S.split_after_marks("你好，世界") == ["你好，", "世界。"]
    assert S.split_after_marks("甲……乙——丙") == ["甲。", "乙，", "丙。"]


def test_cut0():
    assert S.cut0(TEXT) == TEXT
    assert S.cut0("…, .") == "\n"


def test_cut1_groups_of_four_with_remainder_in_last():
    assert S.cut1("一，二，三，四，") == "一，二，三，四，"  # <= 4 pieces: unchanged
    assert S.cut1(TEXT) == TEXT  # 7 pieces: one group
    eight = "a,b,c,d,e,f,g,h,"
    assert S.cut1(eight) == eight  # 8 pieces: range(0, 8, 4) has two starts -> one group
    nine = "a,b,c,d,e,f,g,h,i,"
    assert S.cut1(nine) == "a,b,c,d,\ne,f,g,h,i,"


def test_cut2_fifty_chars():
    long = "这是一个很长的句子需要被切分开来，" * 6
    out = S.cut2(long).split("\n")
    assert "".join(out) == long
    assert all(len(x) > 50 for x in out)
    assert S.cut2("短句，") == "短句，"


def test_cut3_cut4_cut5():
    assert S.cut3("甲乙。丙丁。") == "甲乙\n丙丁"
    assert S.cut4("Pi is 3.14. Next.") == "Pi is 3.14. Next"  # '.' after a digit never cuts
    assert S.cut4("One. Two.") == "One\n Two"
    assert S.cut5("价格3.5元，好的。ok") == "价格3.5元，\n好的。\nok"
    assert S.cut5("，，好") == "好"


def test_merge_short_and_big_text():
    assert S.merge_short(["ab", "cd", "e", "fghij", "k"], 5) == ["abcde", "fghijk"]
    assert S.merge_short(["ab"], 5) == ["ab"]
    assert S.merge_short(["a", "b"], 5) == ["ab"]
    parts = S.split_big_text("甲" * 300 + "，" + "乙" * 300 + "。")
    assert parts == ["甲" * 300 + "，", "乙" * 300 + "。"]


def test_prepare_segments():
    # a short first clause gets a leading mark, which cut5 then drops as a piece of its own
    assert S.prepare_segments("你好", "zh", "cut5") == ["你好。"]
    assert S.prepare_segments("你好", "zh", "cut0") == ["。你好。"]
    assert S.prepare_segments("Hello there, how are you", "en", "cut5") == ["Hello there,", " how are you."]
    segs = S.prepare_segments("第一句话很长很长。第二句话也很长很长！", "zh", "cut5")
    assert segs == ["第一句话很长很长。", "第二句话也很长很长！"]
    assert S.prepare_segments("好好好好，，，！！再见吧朋友们", "zh", "cut5") == ["好好好好，", "再见吧朋友们。"]


@pytest.mark.parametrize("bad", ["", "\n\n", "   "])
def test_prepare_segments_empty(bad):
    with pytest.raises(ValueError, match="empty|nothing"):
        S.prepare_segments(bad, "zh", "cut1")


def test_prepare_segments_only_punctuation():
    with pytest.raises(ValueError, match="nothing to speak"):
        S.prepare_segments("，。！？", "zh", "cut5")


def test_unknown_method():
    with pytest.raises(ValueError, match="cut0"):
        S.prepare_segments("你好", "zh", "cut9")
