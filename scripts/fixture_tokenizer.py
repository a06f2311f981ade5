"""A tiny tokenizer.json in the DeepSeek-LLM / Janus format, and an independent reference encoder for it.

Used by make_fixtures.py. There is no `tokenizers` package in Debian, so the BPE is trained here by hand:
byte-level BPE (GPT-2 byte-to-unicode alphabet, all 256 bytes), the DeepSeek-LLM pre-tokenizer (a Sequence of
regex Splits, then ByteLevel with use_regex=false), and the Janus added tokens (fullwidth U+FF5C / U+2581 in the
BOS/EOS/PAD strings, janus-spec 6.1). The reference encoder below is what the expected ids in the fixture come
from, so the TypeScript side (tokenizers.js) is checked against a second implementation, not against itself.

The Latin letter class of the first Split is the leading part of DeepSeek's (it stops before the Greek Extended
block, whose range endpoints do not survive NFC normalisation of source files); the other patterns are DeepSeek's.
"""
import collections

import regex  # Debian python3-regex: \p{N} and the same Unicode semantics as Oniguruma for these patterns

BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
PAD = "<\uff5c\u2581pad\u2581\uff5c>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
PLACEHOLDER = "<image_placeholder>"
USER = "<|User|>"
ASSISTANT = "<|Assistant|>"
# Janus order is not contiguous (BOI and EOI are far apart in Janus-Pro-1B); keep them apart here too so nothing
# can assume adjacency.
ADDED = [BOS, EOS, PAD, BOI, USER, ASSISTANT, "<patch_placeholder>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>",
         "<|grounding|>", EOI, PLACEHOLDER]

SPLITS = [
    "[\r\n]",
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f"
    "\u0531-\u0556]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+$",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
    "\\p{N}+",
]

CORPUS = [
    "a red square on a blue background", "a green circle next to a red triangle", "draw a small blue square",
    "make the circle larger and move it to the left", "Hello, how are you?", "the square is red and the circle is green",
    "12 squares and 3 circles", "Replace the red square with a yellow star.", "an image of a cat on a mat",
]
NUM_MERGES = 40


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {v: k for k, v in BYTE_ENC.items()}


def pre_tokenize(text):
    """The Split(Isolated) sequence, then ByteLevel without its own regex."""
    pieces = [text]
    for pat in SPLITS:
        rx = regex.compile(pat)
        out = []
        for p in pieces:
            last = 0
            for m in rx.finditer(p):
                if m.start() == m.end():
                    continue
                if m.start() > last:
                    out.append(p[last:m.start()])
                out.append(m.group(0))
                last = m.end()
            if last < len(p):
                out.append(p[last:])
        pieces = out
    return ["".join(BYTE_ENC[b] for b in p.encode("utf-8")) for p in pieces]


def train_merges():
    words = collections.Counter()
    for line in CORPUS:
        for w in pre_tokenize(line):
            words[tuple(w)] += 1
    merges = []
    for _ in range(NUM_MERGES):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        new_words = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return merges


def build_tokenizer():
    """Returns (tokenizer.json dict, tokenizer_config.json dict, special_tokens_map.json dict)."""
    merges = train_merges()
    vocab = {}
    for b in range(256):
        vocab[BYTE_ENC[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    added = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": True, "special": True} for i, t in enumerate(ADDED)]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in SPLITS
        ] + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [added[0]["id"]], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "clean_up_tokenization_spaces": False,
           "eos_token": EOS, "legacy": True, "model_max_length": 16384, "pad_token": None, "sp_model_kwargs": {},
           "tokenizer_class": "LlamaTokenizer", "unk_token": None, "use_default_system_prompt": False}
    stm = {"additional_special_tokens": ["<image_placeholder>", "<patch_placeholder>", "<|ref|>", "<|/ref|>",
                                         "<|det|>", "<|/det|>", "<|grounding|>", USER, ASSISTANT],
           "bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    return tok, cfg, stm


def _bpe(word, ranks):
    """Lowest-rank pair first, leftmost on ties, one merge at a time (the `tokenizers` BPE order)."""
    syms = list(word)
    while len(syms) > 1:
        best, at = None, -1
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        syms[at:at + 2] = [syms[at] + syms[at + 1]]
    return syms


def encode(tok, text, bos=True):
    vocab = tok["model"]["vocab"]
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(tok["model"]["merges"])}
    added = {a["content"]: a["id"] for a in tok["added_tokens"]}
    ids = [added[BOS]] if bos else []
    i, seg = 0, ""
    contents = sorted(added, key=len, reverse=True)
    while i < len(text):
        hit = next((c for c in contents if text.startswith(c, i)), None)
        if hit is None:
            seg += text[i]
            i += 1
            continue
        ids += _encode_plain(seg, vocab, ranks)
        seg = ""
        ids.append(added[hit])
        i += len(hit)
    return ids + _encode_plain(seg, vocab, ranks)


def _encode_plain(text, vocab, ranks):
    out = []
    for piece in pre_tokenize(text) if text else []:
        out += [vocab[s] for s in _bpe(piece, ranks)]
    return out


def decode(tok, ids, skip_special=False):
    inv = {v: k for k, v in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok["added_tokens"]}
    out, buf = [], bytearray()
    for i in ids:
        if i in added:
            out.append(buf.decode("utf-8", errors="replace"))
            buf = bytearray()
            if not (skip_special and added[i]["special"]):
                out.append(added[i]["content"])
        else:
            buf += bytes(BYTE_DEC[c] for c in inv[i])
    out.append(buf.decode("utf-8", errors="replace"))
    return "".join(out)
