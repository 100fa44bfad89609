"""Chinese text normalisation: numbers, dates, times, money, phone numbers, units -> Chinese words.

Behaviour follows the original's ``TextNormalizer`` (an extended PaddleSpeech ``zh_normalization``):
the order of the rewrite rules matters and is kept exactly, including its oddities (unit abbreviations
are replaced as plain substrings, so ``s`` inside Latin words becomes 秒; a time range reads ``半`` from
the *first* minute). Pure Python, no data beyond the traditional->simplified table.
"""
import functools
import json
import os
import re
import string

DIGITS = dict(zip("0123456789", "零一二三四五六七八九"))
UNITS = {1: "十", 2: "百", 3: "千", 4: "万", 8: "亿"}  # power of ten -> unit

# ---------------------------------------------------------------------------------------- characters
_F2H = {ord(c) + 65248: ord(c) for c in string.ascii_letters + string.digits}
_F2H[0x3000] = ord(" ")


@functools.lru_cache(maxsize=1)
def _t2s_table() -> dict[int, str]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "zh_t2s.json")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    # 34 traditional characters appear twice: the later pair wins, as in the original's dict build
    return {ord(t): s for t, s in zip(d["traditional"], d["simplified"])}


def traditional_to_simplified(text: str) -> str:
    return text.translate(_t2s_table())


# -------------------------------------------------------------------------------------------- numbers
def _cardinal_parts(digits: str, use_zero: bool = True) -> list[str]:
    stripped = digits.lstrip("0")
    if not stripped:
        return []
    if len(stripped) == 1:
        if use_zero and len(stripped) < len(digits):
            return [DIGITS["0"], DIGITS[stripped]]
        return [DIGITS[stripped]]
    unit = max(p for p in UNITS if p < len(stripped))
    return _cardinal_parts(digits[:-unit]) + [UNITS[unit]] + _cardinal_parts(digits[-unit:])


def verbalize_cardinal(digits: str) -> str:
    """'105' -> 一百零五, '10' -> 十 (leading 一十 shortened), '000' -> 零, '' -> ''."""
    if not digits:
        return ""
    digits = digits.lstrip("0")
    if not digits:
        return DIGITS["0"]
    parts = _cardinal_parts(digits)
    if len(parts) >= 2 and parts[0] == "一" and parts[1] == "十":
        parts = parts[1:]
    return "".join(parts)


def verbalize_digit(digits: str, alt_one: bool = False) -> str:
    """Digit by digit; ``alt_one`` reads 1 as 幺 (phone numbers)."""
    out = "".join(DIGITS[d] for d in digits)
    return out.replace("一", "幺") if alt_one else out


def num2str(value: str) -> str:
    """'12.50' -> 十二点五零 ; '.5' -> 零点五 (a trailing run of zeros keeps one zero)."""
    parts = value.split(".")
    if len(parts) > 2:
        raise ValueError(f"number {value!r} has more than one decimal point")
    integer, decimal = (parts + [""])[:2]
    out = verbalize_cardinal(integer)
    decimal = decimal.rstrip("0") + "0" if decimal.endswith("0") else decimal.rstrip("0")
    if decimal:
        out = (out or "零") + "点" + verbalize_digit(decimal)
    return out


def _sign(s: str, word: str = "负") -> str:
    return word if s else ""


# ----------------------------------------------------------------------------------- dates and times
RE_DATE = re.compile(r"(\d{4}|\d{2})年((0?[1-9]|1[0-2])月)?(((0?[1-9])|((1|2)[0-9])|30|31)([日号]))?")
RE_DATE2 = re.compile(r"(\d{4})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])")
_HMS = r"([0-1]?[0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?"
RE_TIME = re.compile(_HMS)
RE_TIME_RANGE = re.compile(_HMS + r"(~|-)" + _HMS)


def _date(m: re.Match) -> str:
    year, month, day = m.group(1), m.group(3), m.group(5)
    out = f"{verbalize_digit(year)}年"
    if month:
        out += f"{verbalize_cardinal(month)}月"
    if day:
        out += f"{verbalize_cardinal(day)}{m.group(9)}"
    return out


def _date2(m: re.Match) -> str:
    return f"{verbalize_digit(m.group(1))}年{verbalize_cardinal(m.group(3))}月{verbalize_cardinal(m.group(4))}日"


def _clock_part(s: str) -> str:
    out = num2str(s.lstrip("0"))
    return DIGITS["0"] + out if s.startswith("0") else out


def _time(m: re.Match) -> str:
    g = m.groups()
    first_minute = g[1]

    def clock(hour, minute, second):
        out = f"{num2str(hour)}点"
        if minute.lstrip("0"):
            # the original tests the FIRST minute for 半 in both halves of a range
            out += "半" if int(first_minute) == 30 else f"{_clock_part(minute)}分"
        if second and second.lstrip("0"):
            out += f"{_clock_part(second)}秒"
        return out

    out = clock(g[0], g[1], g[3])
    if len(g) > 5:
        out += "至" + clock(g[5], g[6], g[8])
    return out


# ------------------------------------------------------------------------------ quantities and units
_UNIT = r"(%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s)"
_NUM = r"((-?)((\d+)(\.\d+)?)|(\.(\d+)))"
RE_TO_RANGE = re.compile(_NUM + _UNIT + "[~]" + _NUM + _UNIT)
RE_TEMPERATURE = re.compile(r"(-?)(\d+(\.\d+)?)(°C|℃|度|摄氏度)")
MEASURES = {  # insertion order matters: plain substring replacement, first to last
    "cm2": "平方厘米", "cm²": "平方厘米", "cm3": "立方厘米", "cm³": "立方厘米", "cm": "厘米", "db": "分贝",
    "ds": "毫秒", "kg": "千克", "km": "千米", "m2": "平方米", "m²": "平方米", "m³": "立方米", "m3": "立方米",
    "ml": "毫升", "m": "米", "mm": "毫米", "s": "秒",
}


def _temperature(m: re.Match) -> str:
    unit = "摄氏度" if m.group(4) == "摄氏度" else "度"
    return f"{_sign(m.group(1), '零下')}{num2str(m.group(2))}{unit}"


def replace_measure(sentence: str) -> str:
    for k, v in MEASURES.items():
        sentence = sentence.replace(k, v)
    return sentence


# ------------------------------------------------------------------------------------------ arithmetic
_SUP = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"((-?)((\d+)(\.\d+)?[{_SUP}]*)|(\.\d+[{_SUP}]*)|([A-Za-z][{_SUP}]*))"
RE_ASMD = re.compile(_OPERAND + r"([\+\-\×÷=])" + _OPERAND)
_ASMD = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}
RE_POWER = re.compile(f"[{_SUP}]+")
_POWER = dict(zip(_SUP, "0123456789xyn"))


def _asmd(m: re.Match) -> str:
    return m.group(1) + _ASMD[m.group(8)] + m.group(9)


def _power(m: re.Match) -> str:
    return "的" + "".join(_POWER[c] for c in m.group(0)) + "次方"


# ------------------------------------------------------------------------------------- number shapes
RE_FRAC = re.compile(r"(-?)(\d+)/(\d+)")
RE_PERCENTAGE = re.compile(r"(-?)(\d+(\.\d+)?)%")
RE_MOBILE_PHONE = re.compile(r"(?<!\d)((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})(?!\d)")
RE_TELEPHONE = re.compile(r"(?<!\d)((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})(?!\d)")
RE_NATIONAL_UNIFORM_NUMBER = re.compile(r"(400)(-)?\d{3}(-)?\d{4}")
RE_RANGE = re.compile(r"(?<![\d\+\-\×÷=])((-?)((\d+)(\.\d+)?))[-~]((-?)((\d+)(\.\d+)?))(?![\d\+\-\×÷=])")
RE_INTEGER = re.compile(r"(-)(\d+)")
RE_VERSION_NUM = re.compile(r"((\d+)(\.\d+)(\.\d+)?(\.\d+)+)")
RE_DECIMAL_NUM = re.compile(r"(-?)((\d+)(\.\d+))|(\.(\d+))")
RE_NUMBER = re.compile(r"(-?)((\d+)(\.\d+)?)|(\.(\d+))")
RE_DEFAULT_NUM = re.compile(r"\d{3}\d*")
QUANTIFIERS = (
    "(处|台|架|枚|趟|幅|平|方|堵|间|床|株|批|项|例|列|篇|栋|注|亩|封|艘|把|目|套|段|人|所|朵|匹|张|座|回|场|尾|条|个|首|阙|阵|网|"
    "炮|顶|丘|棵|只|支|袭|辆|挑|担|颗|壳|窠|曲|墙|群|腔|砣|座|客|贯|扎|捆|刀|令|打|手|罗|坡|山|岭|江|溪|钟|队|单|双|对|出|口|头|"
    "脚|板|跳|枝|件|贴|针|线|管|名|位|身|堂|课|本|页|家|户|层|丝|毫|厘|分|钱|两|斤|担|铢|石|钧|锱|忽|(千|毫|微)克|毫|厘|(公)分|"
    "分|寸|尺|丈|里|寻|常|铺|程|(千|分|厘|毫|微)米|米|撮|勺|合|升|斗|石|盘|碗|碟|叠|桶|笼|盆|盒|杯|钟|斛|锅|簋|篮|盘|桶|罐|瓶|壶|"
    "卮|盏|箩|箱|煲|啖|袋|钵|年|月|日|季|刻|时|周|天|秒|分|小时|旬|纪|岁|世|更|夜|春|夏|秋|冬|代|伏|辈|丸|泡|粒|颗|幢|堆|条|根|支|"
    "道|面|片|张|颗|块|元|(亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|美|)元|(亿|千万|百万|万|千|百|十|)吨|"
    "(亿|千万|百万|万|千|百|)块|角|毛|分)"
)
RE_POSITIVE_QUANTIFIERS = re.compile(r"(\d+)([多余几\+])?" + QUANTIFIERS)


def _frac(m: re.Match) -> str:
    return f"{_sign(m.group(1))}{num2str(m.group(3))}分之{num2str(m.group(2))}"


def _percentage(m: re.Match) -> str:
    return f"{_sign(m.group(1))}百分之{num2str(m.group(2))}"


def _phone(m: re.Match, mobile: bool) -> str:
    s = m.group(0)
    parts = s.strip("+").split() if mobile else s.split("-")
    return "，".join(verbalize_digit(p, alt_one=True) for p in parts)


def _number(m: re.Match) -> str:
    if m.group(5):  # pure decimal ".5"
        return num2str(m.group(5))
    return f"{_sign(m.group(1))}{num2str(m.group(2))}"


def _range(m: re.Match) -> str:
    return f"{RE_NUMBER.sub(_number, m.group(1))}到{RE_NUMBER.sub(_number, m.group(6))}"


def _negative(m: re.Match) -> str:
    return f"{_sign(m.group(1))}{num2str(m.group(2))}"


def _version(m: re.Match) -> str:
    return "".join("点" if c == "." else num2str(c) for c in m.group(1))


def _quantifier(m: re.Match) -> str:
    number = num2str(m.group(1))
    number = "两" if number == "二" else number
    more = "多" if m.group(2) == "+" else (m.group(2) or "")
    return f"{number}{more}{m.group(3)}"


# ------------------------------------------------------------------------------------------ sentences
_SENTENCE_END = re.compile(r"([：、，；。？！,;?!][”’]?)")
_SPLIT_DROP = re.compile(r"[——《》【】<>{}()（）#&@“”^_|\\]")
_POST_DROP = re.compile(r"[-——《》【】<=>{}()（）#&@“”^_|\\]")
_POST_MAP = [
    ("/", "每"), ("①", "一"), ("②", "二"), ("③", "三"), ("④", "四"), ("⑤", "五"), ("⑥", "六"), ("⑦", "七"),
    ("⑧", "八"), ("⑨", "九"), ("⑩", "十"), ("α", "阿尔法"), ("β", "贝塔"), ("γ", "伽玛"), ("Γ", "伽玛"),
    ("δ", "德尔塔"), ("Δ", "德尔塔"), ("ε", "艾普西龙"), ("ζ", "捷塔"), ("η", "依塔"), ("θ", "西塔"), ("Θ", "西塔"),
    ("ι", "艾欧塔"), ("κ", "喀帕"), ("λ", "拉姆达"), ("Λ", "拉姆达"), ("μ", "缪"), ("ν", "拗"), ("ξ", "克西"),
    ("Ξ", "克西"), ("ο", "欧米克伦"), ("π", "派"), ("Π", "派"), ("ρ", "肉"), ("ς", "西格玛"), ("Σ", "西格玛"),
    ("σ", "西格玛"), ("τ", "套"), ("υ", "宇普西龙"), ("φ", "服艾"), ("Φ", "服艾"), ("χ", "器"), ("ψ", "普赛"),
    ("Ψ", "普赛"), ("ω", "欧米伽"), ("Ω", "欧米伽"), ("+", "加"), ("-", "减"), ("×", "乘"), ("÷", "除"), ("=", "等"),
]


def split_sentences(text: str) -> list[str]:
    """Drop spaces and bracket-like symbols, then cut after each clause-ending mark."""
    text = _SPLIT_DROP.sub("", text.replace(" ", ""))
    text = _SENTENCE_END.sub(r"\1\n", text).strip()
    return [s.strip() for s in re.split(r"\n+", text)]


def normalize_sentence(s: str) -> str:
    s = traditional_to_simplified(s).translate(_F2H)
    s = RE_DATE.sub(_date, s)
    s = RE_DATE2.sub(_date2, s)
    s = RE_TIME_RANGE.sub(_time, s)
    s = RE_TIME.sub(_time, s)
    s = RE_TO_RANGE.sub(lambda m: m.group(0).replace("~", "至"), s)
    s = RE_TEMPERATURE.sub(_temperature, s)
    s = replace_measure(s)
    while RE_ASMD.search(s):
        s = RE_ASMD.sub(_asmd, s)
    s = RE_POWER.sub(_power, s)
    s = RE_FRAC.sub(_frac, s)
    s = RE_PERCENTAGE.sub(_percentage, s)
    s = RE_MOBILE_PHONE.sub(lambda m: _phone(m, True), s)
    s = RE_TELEPHONE.sub(lambda m: _phone(m, False), s)
    s = RE_NATIONAL_UNIFORM_NUMBER.sub(lambda m: _phone(m, False), s)
    s = RE_RANGE.sub(_range, s)
    s = RE_INTEGER.sub(_negative, s)
    s = RE_VERSION_NUM.sub(_version, s)
    s = RE_DECIMAL_NUM.sub(_number, s)
    s = RE_POSITIVE_QUANTIFIERS.sub(_quantifier, s)
    s = RE_DEFAULT_NUM.sub(lambda m: verbalize_digit(m.group(0), alt_one=True), s)
    s = RE_NUMBER.sub(_number, s)
    for k, v in _POST_MAP:
        s = s.replace(k, v)
    return _POST_DROP.sub("", s)


def normalize(text: str) -> list[str]:
    """Text -> list of normalised sentences (the original's ``TextNormalizer().normalize``)."""
    return [normalize_sentence(s) for s in split_sentences(text)]
